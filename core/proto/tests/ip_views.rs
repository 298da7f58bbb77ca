//! `IpPacket` views over hand-made packets, cross-checked with etherparse.
#![allow(missing_docs, clippy::doc_markdown)]

mod ip_fixtures;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{IpNumber, Ipv4Header, SlicedPacket, TransportSlice, UdpHeader};
use ip_fixtures::*;
use veil_proto::ip::{
    FlowKey, FlowProtocol, Fragment, IpPacket, IpVersion, TcpFlags, Transport, protocol,
};

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn doc_v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

#[test]
fn fixture_checksums_agree_with_a_naive_implementation_and_etherparse() {
    for packet in [
        &IPV4_UDP[..],
        &IPV4_TCP_SYN,
        &IPV4_ICMP_ECHO,
        &IPV4_AH_UDP,
        &IPV4_FIRST_FRAGMENT,
        &IPV4_LATER_FRAGMENT,
    ] {
        assert_eq!(internet_checksum(&packet[..20]), 0, "{packet:02x?}");
        let (header, _) = Ipv4Header::from_slice(packet).unwrap();
        assert_eq!(
            header.calc_header_checksum(),
            u16::from_be_bytes([packet[10], packet[11]])
        );
    }
    // The UDP checksum of IPV4_UDP, as etherparse computes it.
    let (ip, rest) = Ipv4Header::from_slice(&IPV4_UDP).unwrap();
    let (udp, payload) = UdpHeader::from_slice(rest).unwrap();
    assert_eq!(udp.calc_checksum_ipv4(&ip, payload).unwrap(), 0x1eaa);
}

#[test]
fn ipv4_udp() {
    let packet = IpPacket::new_checked(&IPV4_UDP).unwrap();
    assert_eq!(packet.version(), IpVersion::V4);
    assert_eq!(packet.source(), v4(192, 0, 2, 1));
    assert_eq!(packet.destination(), v4(198, 51, 100, 7));
    assert_eq!(packet.hop_limit(), 64);
    assert_eq!(packet.protocol(), protocol::UDP);
    assert_eq!(packet.header_len(), 20);
    assert_eq!(packet.as_bytes(), &IPV4_UDP);
    assert_eq!(packet.payload(), &IPV4_UDP[20..]);
    assert_eq!(packet.fragment(), None);
    assert!(packet.dont_fragment());
    let Transport::Udp(udp) = packet.transport() else {
        panic!("not UDP: {:?}", packet.transport());
    };
    assert_eq!(udp.source_port(), 5353);
    assert_eq!(udp.destination_port(), 53);
    assert_eq!(udp.length(), 12);
    assert_eq!(udp.checksum(), 0x1eaa);
    assert_eq!(udp.payload(), b"veil");
    assert!(udp.checksum_valid());
    assert_eq!(
        packet.flow_key(),
        Some(FlowKey {
            protocol: FlowProtocol::Udp,
            source: "192.0.2.1:5353".parse().unwrap(),
            destination: "198.51.100.7:53".parse().unwrap(),
        })
    );
}

#[test]
fn flow_key_reverses_for_the_return_direction() {
    let key = IpPacket::new_checked(&IPV4_UDP)
        .unwrap()
        .flow_key()
        .unwrap();
    let back = key.reversed();
    assert_eq!(back.source, key.destination);
    assert_eq!(back.destination, key.source);
    assert_eq!(back.reversed(), key);
}

#[test]
fn a_corrupted_udp_payload_fails_the_checksum_but_not_the_parse() {
    let mut bytes = IPV4_UDP;
    bytes[31] ^= 0x01;
    let packet = IpPacket::new_checked(&bytes).unwrap();
    let Transport::Udp(udp) = packet.transport() else {
        panic!("not UDP");
    };
    assert!(!udp.checksum_valid());
}

#[test]
fn ipv4_udp_without_checksum_is_valid_but_ipv6_is_not() {
    let mut bytes = IPV4_UDP;
    bytes[26] = 0;
    bytes[27] = 0;
    let Transport::Udp(udp) = IpPacket::new_checked(&bytes).unwrap().transport() else {
        panic!("not UDP");
    };
    assert!(udp.checksum_valid());

    let mut udp6 = UDP_FOR_IPV6;
    udp6[6] = 0;
    udp6[7] = 0;
    let bytes = ipv6_packet(protocol::UDP, &[&udp6]);
    let Transport::Udp(udp) = IpPacket::new_checked(&bytes).unwrap().transport() else {
        panic!("not UDP");
    };
    assert!(!udp.checksum_valid());
}

#[test]
fn trailing_bytes_beyond_the_total_length_are_ignored() {
    let mut padded = IPV4_UDP.to_vec();
    padded.extend_from_slice(&[0xee; 14]);
    let packet = IpPacket::new_checked(&padded).unwrap();
    assert_eq!(packet.as_bytes(), &IPV4_UDP);

    let mut padded = ipv6_extensions_udp();
    let len = padded.len();
    padded.extend_from_slice(&[0; 3]);
    assert_eq!(
        IpPacket::new_checked(&padded).unwrap().as_bytes().len(),
        len
    );
}

#[test]
fn udp_length_shorter_than_the_ip_payload_trims_the_payload() {
    // UDP Length 10 of the 12 bytes the IP packet carries: the payload is "ve".
    let mut bytes = IPV4_UDP;
    bytes[25] = 10;
    let Transport::Udp(udp) = IpPacket::new_checked(&bytes).unwrap().transport() else {
        panic!("not UDP");
    };
    assert_eq!(udp.payload(), b"ve");
}

#[test]
fn ipv6_extension_chain_then_udp() {
    let bytes = ipv6_extensions_udp();
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(packet.version(), IpVersion::V6);
    assert_eq!(packet.source(), doc_v6(1));
    assert_eq!(packet.destination(), doc_v6(2));
    assert_eq!(packet.hop_limit(), 64);
    assert_eq!(packet.protocol(), protocol::UDP);
    assert_eq!(packet.header_len(), 40 + 24);
    assert_eq!(packet.payload(), &UDP_FOR_IPV6);
    let Transport::Udp(udp) = packet.transport() else {
        panic!("not UDP");
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (40000, 443));
    assert_eq!(udp.payload(), b"quic");
    assert!(udp.checksum_valid());
    assert_eq!(
        packet.flow_key().unwrap().source,
        SocketAddr::new(doc_v6(1), 40000)
    );

    // etherparse finds the same transport header and payload.
    let sliced = SlicedPacket::from_ip(&bytes).unwrap();
    let Some(TransportSlice::Udp(their)) = sliced.transport else {
        panic!("etherparse found no UDP");
    };
    assert_eq!(their.payload(), udp.payload());
    assert_eq!(their.source_port(), udp.source_port());
}

#[test]
fn ipv6_later_fragment_has_no_transport_header() {
    let bytes = ipv6_later_fragment();
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(
        packet.fragment(),
        Some(Fragment {
            identification: 0xdead_beef,
            offset: 185,
            more_fragments: false,
        })
    );
    assert!(!packet.fragment().unwrap().is_first());
    // The first header of the fragmentable part, which this fragment does not hold.
    assert_eq!(packet.protocol(), protocol::DESTINATION_OPTIONS);
    assert_eq!(packet.transport(), Transport::Fragment);
    assert_eq!(packet.payload(), &[0xff; 8]);
    assert_eq!(packet.header_len(), 48);
    assert_eq!(packet.flow_key(), None);
}

#[test]
fn ipv6_first_fragment_is_a_fragment_even_though_its_udp_length_overruns() {
    let bytes = ipv6_first_fragment();
    let packet = IpPacket::new_checked(&bytes).unwrap();
    let fragment = packet.fragment().unwrap();
    assert!(fragment.is_first());
    assert!(fragment.more_fragments);
    assert_eq!(fragment.identification, 7);
    assert_eq!(packet.protocol(), protocol::UDP);
    assert_eq!(packet.transport(), Transport::Fragment);
    assert_eq!(packet.payload().len(), 16);
    assert_eq!(packet.flow_key(), None);
}

#[test]
fn ipv6_atomic_fragment_is_a_whole_packet() {
    let bytes = ipv6_atomic_fragment();
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(packet.fragment(), None);
    assert_eq!(packet.header_len(), 48);
    assert!(matches!(packet.transport(), Transport::Udp(udp) if udp.checksum_valid()));
}

#[test]
fn ipv4_fragments() {
    let first = IpPacket::new_checked(&IPV4_FIRST_FRAGMENT).unwrap();
    assert_eq!(
        first.fragment(),
        Some(Fragment {
            identification: 0xbeef,
            offset: 0,
            more_fragments: true,
        })
    );
    assert!(!first.dont_fragment());
    assert_eq!(first.transport(), Transport::Fragment);
    assert_eq!(first.protocol(), protocol::UDP);

    let later = IpPacket::new_checked(&IPV4_LATER_FRAGMENT).unwrap();
    assert_eq!(
        later.fragment(),
        Some(Fragment {
            identification: 0xbeef,
            offset: 185,
            more_fragments: false,
        })
    );
    assert_eq!(later.transport(), Transport::Fragment);
    assert_eq!(later.payload(), b"IJKLMNOP");
}

#[test]
fn ipv4_tcp_syn() {
    let packet = IpPacket::new_checked(&IPV4_TCP_SYN).unwrap();
    let Transport::Tcp(tcp) = packet.transport() else {
        panic!("not TCP");
    };
    assert_eq!((tcp.source_port(), tcp.destination_port()), (51000, 80));
    assert_eq!(tcp.sequence_number(), 0x0102_0304);
    assert_eq!(tcp.acknowledgment_number(), 0);
    assert_eq!(tcp.header_len(), 24);
    assert_eq!(tcp.flags(), TcpFlags::SYN);
    assert!(tcp.flags().contains(TcpFlags::SYN));
    assert!(!tcp.flags().contains(TcpFlags::SYN | TcpFlags::ACK));
    assert_eq!(tcp.window(), 64240);
    assert_eq!(tcp.urgent_pointer(), 0);
    assert_eq!(tcp.options(), &[0x02, 0x04, 0x05, 0xb4]);
    assert!(tcp.payload().is_empty());
    assert!(tcp.checksum_valid());
    assert_eq!(packet.flow_key().unwrap().protocol, FlowProtocol::Tcp);

    // etherparse computes the same TCP checksum.
    let sliced = SlicedPacket::from_ip(&IPV4_TCP_SYN).unwrap();
    let Some(TransportSlice::Tcp(their)) = sliced.transport else {
        panic!("etherparse found no TCP");
    };
    assert_eq!(
        their
            .calc_checksum_ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .unwrap(),
        tcp.checksum()
    );
}

#[test]
fn ipv4_icmp_echo() {
    let packet = IpPacket::new_checked(&IPV4_ICMP_ECHO).unwrap();
    let Transport::Icmpv4(icmp) = packet.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (8, 0));
    assert_eq!(icmp.rest_of_header(), [0x12, 0x34, 0x00, 0x01]);
    assert_eq!(icmp.payload(), b"ping");
    assert!(!icmp.is_error());
    assert!(icmp.checksum_valid());
    assert_eq!(icmp.echo_identifier(), Some(0x1234));
    let key = packet.flow_key().unwrap();
    assert_eq!(key.protocol, FlowProtocol::IcmpEcho);
    assert_eq!(
        (key.source.port(), key.destination.port()),
        (0x1234, 0x1234)
    );
    assert_eq!(key.source.ip(), packet.source());
}

#[test]
fn ipv6_icmp_echo_checksum_covers_the_pseudo_header() {
    let bytes = ipv6_packet(protocol::ICMPV6, &[&ICMPV6_ECHO]);
    let packet = IpPacket::new_checked(&bytes).unwrap();
    let Transport::Icmpv6(icmp) = packet.transport() else {
        panic!("not ICMPv6");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (128, 0));
    assert!(!icmp.is_error());
    assert!(icmp.checksum_valid());
    let sliced = SlicedPacket::from_ip(&bytes).unwrap();
    let Some(TransportSlice::Icmpv6(their)) = sliced.transport else {
        panic!("etherparse found no ICMPv6");
    };
    let ip = sliced.net.unwrap();
    let etherparse::NetSlice::Ipv6(ip) = ip else {
        panic!("not IPv6")
    };
    assert!(their.is_checksum_valid(ip.header().source(), ip.header().destination()));

    // The same message from another source no longer verifies.
    let mut moved = bytes.clone();
    moved[23] = 9;
    let Transport::Icmpv6(icmp) = IpPacket::new_checked(&moved).unwrap().transport() else {
        panic!("not ICMPv6");
    };
    assert!(!icmp.checksum_valid());
}

#[test]
fn icmp_error_types() {
    let mut bytes = IPV4_ICMP_ECHO;
    for (icmp_type, error) in [
        (0, false),
        (3, true),
        (5, true),
        (11, true),
        (13, false),
        (99, true),
    ] {
        bytes[20] = icmp_type;
        let Transport::Icmpv4(icmp) = IpPacket::new_checked(&bytes).unwrap().transport() else {
            panic!("not ICMP");
        };
        assert_eq!(icmp.is_error(), error, "type {icmp_type}");
        // Only echo requests and replies are flows; timestamps and errors are not.
        let echo = icmp_type == 0;
        assert_eq!(icmp.echo_identifier().is_some(), echo, "type {icmp_type}");
        let packet = IpPacket::new_checked(&bytes).unwrap();
        assert_eq!(packet.flow_key().is_some(), echo, "type {icmp_type}");
    }
    let mut icmp6 = ICMPV6_ECHO;
    for (icmp_type, error) in [
        (1, true),
        (2, true),
        (127, true),
        (128, false),
        (137, false),
    ] {
        icmp6[0] = icmp_type;
        let bytes = ipv6_packet(protocol::ICMPV6, &[&icmp6]);
        let Transport::Icmpv6(icmp) = IpPacket::new_checked(&bytes).unwrap().transport() else {
            panic!("not ICMPv6");
        };
        assert_eq!(icmp.is_error(), error, "type {icmp_type}");
        let echo = icmp_type == 128;
        assert_eq!(icmp.echo_identifier().is_some(), echo, "type {icmp_type}");
        let packet = IpPacket::new_checked(&bytes).unwrap();
        assert_eq!(
            packet.flow_key().map(|key| key.protocol),
            echo.then_some(FlowProtocol::IcmpEcho),
            "type {icmp_type}"
        );
    }
}

#[test]
fn ipv4_authentication_header_is_walked() {
    let packet = IpPacket::new_checked(&IPV4_AH_UDP).unwrap();
    assert_eq!(packet.protocol(), protocol::UDP);
    assert_eq!(packet.header_len(), 20 + 24);
    let Transport::Udp(udp) = packet.transport() else {
        panic!("not UDP");
    };
    assert_eq!(udp.payload(), b"veil");
    assert!(udp.checksum_valid());
}

#[test]
fn unparsed_protocols_are_other() {
    // ESP: opaque.
    let bytes = ipv6_packet(protocol::ESP, &[&[0; 16]]);
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(
        (packet.protocol(), packet.transport()),
        (50, Transport::Other)
    );
    assert_eq!(packet.payload(), &[0; 16]);
    // No Next Header after a Destination Options header.
    let bytes = ipv6_packet(60, &[&[59, 0, 1, 4, 0, 0, 0, 0]]);
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(
        (packet.protocol(), packet.transport()),
        (59, Transport::Other)
    );
    assert!(packet.payload().is_empty());
    // ICMPv6 in IPv4 is not ICMP.
    let mut bytes = IPV4_ICMP_ECHO;
    bytes[9] = protocol::ICMPV6;
    fix_ipv4_checksum(&mut bytes);
    assert_eq!(
        IpPacket::new_checked(&bytes).unwrap().transport(),
        Transport::Other
    );
}

#[test]
fn ipv4_options_are_part_of_the_header() {
    // IHL 6: one word of options (NOP NOP NOP End), before the UDP datagram.
    let mut bytes = [&IPV4_UDP[..20], &[1, 1, 1, 0], &IPV4_UDP[20..]].concat();
    bytes[0] = 0x46;
    bytes[3] = 36;
    fix_ipv4_checksum(&mut bytes);
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(packet.header_len(), 24);
    assert!(matches!(packet.transport(), Transport::Udp(udp) if udp.checksum_valid()));
    assert_eq!(
        etherparse::Ipv4HeaderSlice::from_slice(&bytes)
            .unwrap()
            .protocol(),
        IpNumber::UDP
    );
}

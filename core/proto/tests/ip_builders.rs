//! The UDP and ICMP builders, the ICMP error rules and the hop-limit decrement.
#![allow(missing_docs, clippy::doc_markdown)]

mod ip_fixtures;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{Icmpv4Slice, Icmpv6Slice, IpSlice, SlicedPacket, TransportSlice};
use ip_fixtures::*;
use veil_proto::BufferTooSmall;
use veil_proto::ip::{
    EncodeIcmpError, EncodeUdpError, HopLimitError, Icmpv4Error, Icmpv4Unreachable, Icmpv6Error,
    Icmpv6Unreachable, IpPacket, IpVersion, Transport, decrement_hop_limit, encode_icmpv4_error,
    encode_icmpv6_error, encode_udp, encode_udp_in_place, icmp_error_len, may_send_icmp_error_for,
    protocol, udp_headroom,
};

const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

#[test]
fn encode_udp_ipv4_writes_the_fixture_bytes() {
    let mut out = [0; 64];
    let len = encode_udp(
        &mut out,
        addr("192.0.2.1:5353"),
        addr("198.51.100.7:53"),
        b"veil",
    )
    .unwrap();
    assert_eq!(&out[..len], &IPV4_UDP);
}

#[test]
fn encode_udp_ipv6_is_read_back_by_the_view_and_by_etherparse() {
    let mut out = [0; 64];
    let len = encode_udp(
        &mut out,
        addr("[2001:db8::1]:40000"),
        addr("[2001:db8::2]:443"),
        b"quic",
    )
    .unwrap();
    assert_eq!(len, 52);
    assert_eq!(
        &out[..len],
        &ipv6_packet(protocol::UDP, &[&UDP_FOR_IPV6])[..]
    );

    let packet = IpPacket::new_checked(&out[..len]).unwrap();
    assert_eq!(packet.hop_limit(), 64);
    let Transport::Udp(udp) = packet.transport() else {
        panic!("not UDP");
    };
    assert!(udp.checksum_valid());
    let sliced = SlicedPacket::from_ip(&out[..len]).unwrap();
    let Some(TransportSlice::Udp(their)) = sliced.transport else {
        panic!("etherparse found no UDP");
    };
    let Some(etherparse::NetSlice::Ipv6(ip)) = sliced.net else {
        panic!("not IPv6");
    };
    assert_eq!(
        their
            .to_header()
            .calc_checksum_ipv6(&ip.header().to_header(), their.payload())
            .unwrap(),
        udp.checksum()
    );
}

#[test]
fn encode_udp_in_place_matches_encode_udp() {
    let payload = b"datagram behind headroom";
    let (source, destination) = (addr("10.1.2.3:1000"), addr("10.3.2.1:2000"));
    let mut copied = [0; 128];
    let len = encode_udp(&mut copied, source, destination, payload).unwrap();

    let headroom = udp_headroom(IpVersion::V4);
    assert_eq!(headroom, 28);
    let mut in_place = [0xaa; 128];
    in_place[headroom..headroom + payload.len()].copy_from_slice(payload);
    let len2 = encode_udp_in_place(&mut in_place, source, destination, payload.len()).unwrap();
    assert_eq!(&in_place[..len2], &copied[..len]);
    assert_eq!(udp_headroom(IpVersion::V6), 48);
}

#[test]
fn encode_udp_errors() {
    let mut out = [0; 64];
    assert_eq!(
        encode_udp(&mut out, addr("1.2.3.4:1"), addr("[::1]:2"), b""),
        Err(EncodeUdpError::AddressFamilyMismatch)
    );
    assert_eq!(
        encode_udp(&mut out, addr("1.2.3.4:1"), addr("5.6.7.8:2"), &[0; 37]),
        Err(EncodeUdpError::BufferTooSmall(BufferTooSmall {
            needed: 65,
            available: 64
        }))
    );
    let big = vec![0; 65_508];
    assert_eq!(
        encode_udp(&mut out, addr("1.2.3.4:1"), addr("5.6.7.8:2"), &big),
        Err(EncodeUdpError::PayloadTooLarge {
            len: 65_508,
            max: 65_507
        })
    );
    let bigger = vec![0; 65_528];
    assert_eq!(
        encode_udp(&mut out, addr("[::1]:1"), addr("[::2]:2"), &bigger),
        Err(EncodeUdpError::PayloadTooLarge {
            len: 65_528,
            max: 65_527
        })
    );
    // The in-place variant checks that the announced payload is in the buffer.
    assert_eq!(
        encode_udp_in_place(&mut out, addr("[::1]:1"), addr("[::2]:2"), 17),
        Err(EncodeUdpError::BufferTooSmall(BufferTooSmall {
            needed: 65,
            available: 64
        }))
    );
}

#[test]
fn largest_ipv4_udp_payload_fits() {
    let payload = vec![0x5a; 65_507];
    let mut out = vec![0; 65_535];
    let len = encode_udp(&mut out, addr("1.2.3.4:1"), addr("5.6.7.8:2"), &payload).unwrap();
    assert_eq!(len, 65_535);
    let packet = IpPacket::new_checked(&out).unwrap();
    assert!(matches!(packet.transport(), Transport::Udp(udp) if udp.checksum_valid()));
}

#[test]
fn icmpv4_fragmentation_needed_quotes_the_whole_short_packet() {
    let invoking = IpPacket::new_checked(&IPV4_UDP).unwrap();
    let message = Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::FragmentationNeeded {
        next_hop_mtu: 1280,
    });
    let mut out = [0; 128];
    let len = encode_icmpv4_error(&mut out, ROUTER_V4, &invoking, message).unwrap();
    assert_eq!(len, icmp_error_len(&invoking));
    assert_eq!(len, 20 + 8 + IPV4_UDP.len());

    let reply = IpPacket::new_checked(&out[..len]).unwrap();
    assert_eq!(reply.source(), IpAddr::V4(ROUTER_V4));
    assert_eq!(reply.destination(), invoking.source());
    assert_eq!(reply.hop_limit(), 64);
    let Transport::Icmpv4(icmp) = reply.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (3, 4));
    //# RFC 1191: "unused = 0 | Next-Hop MTU"
    assert_eq!(icmp.rest_of_header(), [0, 0, 0x05, 0x00]);
    assert_eq!(icmp.payload(), &IPV4_UDP);
    assert!(icmp.checksum_valid());
    assert!(icmp.is_error());

    // etherparse agrees on the checksum and the message.
    let theirs = Icmpv4Slice::from_slice(&out[20..len]).unwrap();
    assert_eq!(
        theirs.header().icmp_type.calc_checksum(theirs.payload()),
        icmp.checksum()
    );
    assert_eq!(
        theirs.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1280 }
        )
    );
}

/// A UDP packet of `len` bytes from `source` to `destination`.
fn udp_packet(source: &str, destination: &str, len: usize) -> Vec<u8> {
    let (source, destination) = (addr(source), addr(destination));
    let headroom = if source.is_ipv4() { 28 } else { 48 };
    let mut out = vec![0; len];
    encode_udp(&mut out, source, destination, &vec![0x42; len - headroom]).expect("fits");
    out
}

#[test]
fn icmpv4_error_quotes_at_most_576_bytes_in_all() {
    let bytes = udp_packet("192.0.2.1:1", "198.51.100.7:2", 1400);
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let mut out = [0; 1500];
    let len = encode_icmpv4_error(
        &mut out,
        ROUTER_V4,
        &invoking,
        Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Port),
    )
    .unwrap();
    assert_eq!(len, 576);
    let reply = IpPacket::new_checked(&out[..len]).unwrap();
    let Transport::Icmpv4(icmp) = reply.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (3, 3));
    assert_eq!(icmp.payload(), &bytes[..548]);
    assert!(icmp.checksum_valid());
}

#[test]
fn icmpv4_codes() {
    let invoking = IpPacket::new_checked(&IPV4_UDP).unwrap();
    let cases = [
        (
            Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Network),
            (3, 0),
        ),
        (
            Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Host),
            (3, 1),
        ),
        (
            Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Protocol),
            (3, 2),
        ),
        (
            Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Port),
            (3, 3),
        ),
        (
            Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::AdministrativelyProhibited),
            (3, 13),
        ),
        (Icmpv4Error::TimeExceeded, (11, 0)),
    ];
    for (message, type_code) in cases {
        let mut out = [0; 128];
        let len = encode_icmpv4_error(&mut out, ROUTER_V4, &invoking, message).unwrap();
        let Transport::Icmpv4(icmp) = IpPacket::new_checked(&out[..len]).unwrap().transport()
        else {
            panic!("not ICMP");
        };
        assert_eq!((icmp.icmp_type(), icmp.code()), type_code, "{message:?}");
        assert_eq!(icmp.rest_of_header(), [0; 4]);
        assert!(icmp.checksum_valid());
    }
}

#[test]
fn icmpv6_packet_too_big_quotes_up_to_the_minimum_mtu() {
    let bytes = udp_packet("[2001:db8::1]:1", "[2001:db8::2]:2", 1500);
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let mut out = [0; 1500];
    let len = encode_icmpv6_error(
        &mut out,
        ROUTER_V6,
        &invoking,
        Icmpv6Error::PacketTooBig { mtu: 1400 },
    )
    .unwrap();
    assert_eq!(len, 1280);
    assert_eq!(len, icmp_error_len(&invoking));
    let reply = IpPacket::new_checked(&out[..len]).unwrap();
    assert_eq!(reply.source(), IpAddr::V6(ROUTER_V6));
    assert_eq!(reply.destination(), invoking.source());
    let Transport::Icmpv6(icmp) = reply.transport() else {
        panic!("not ICMPv6");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (2, 0));
    assert_eq!(icmp.rest_of_header(), 1400u32.to_be_bytes());
    assert_eq!(icmp.payload(), &bytes[..1232]);
    assert!(icmp.checksum_valid());
    let theirs = Icmpv6Slice::from_slice(&out[40..len]).unwrap();
    assert!(theirs.is_checksum_valid(
        ROUTER_V6.octets(),
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    ));
    assert_eq!(
        theirs.icmp_type(),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1400 }
    );
}

#[test]
fn icmpv6_codes() {
    let bytes = ipv6_extensions_udp();
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let cases = [
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::NoRoute),
            (1, 0),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::AdministrativelyProhibited),
            (1, 1),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::BeyondScope),
            (1, 2),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::Address),
            (1, 3),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::Port),
            (1, 4),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::SourcePolicyFailed),
            (1, 5),
        ),
        (
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::RejectRoute),
            (1, 6),
        ),
        (Icmpv6Error::TimeExceeded, (3, 0)),
    ];
    for (message, type_code) in cases {
        let mut out = [0; 256];
        let len = encode_icmpv6_error(&mut out, ROUTER_V6, &invoking, message).unwrap();
        assert_eq!(len, 40 + 8 + bytes.len());
        let reply = IpPacket::new_checked(&out[..len]).unwrap();
        let Transport::Icmpv6(icmp) = reply.transport() else {
            panic!("not ICMPv6");
        };
        assert_eq!((icmp.icmp_type(), icmp.code()), type_code, "{message:?}");
        assert_eq!(icmp.payload(), &bytes[..]);
        assert!(icmp.checksum_valid());
        // etherparse reads the quoted packet back out of the error.
        let sliced = SlicedPacket::from_ip(&out[..len]).unwrap();
        let Some(TransportSlice::Icmpv6(theirs)) = sliced.transport else {
            panic!("etherparse found no ICMPv6");
        };
        assert!(IpSlice::from_slice(theirs.payload()).is_ok());
    }
}

#[test]
fn icmp_error_encode_errors() {
    let v4 = IpPacket::new_checked(&IPV4_UDP).unwrap();
    let v6_bytes = ipv6_extensions_udp();
    let v6 = IpPacket::new_checked(&v6_bytes).unwrap();
    let mut out = [0; 128];
    assert_eq!(
        encode_icmpv6_error(&mut out, ROUTER_V6, &v4, Icmpv6Error::TimeExceeded),
        Err(EncodeIcmpError::VersionMismatch)
    );
    assert_eq!(
        encode_icmpv4_error(&mut out, ROUTER_V4, &v6, Icmpv4Error::TimeExceeded),
        Err(EncodeIcmpError::VersionMismatch)
    );
    assert_eq!(
        encode_icmpv4_error(&mut out[..59], ROUTER_V4, &v4, Icmpv4Error::TimeExceeded),
        Err(EncodeIcmpError::BufferTooSmall(BufferTooSmall {
            needed: 60,
            available: 59
        }))
    );
    let echo = IpPacket::new_checked(&IPV4_ICMP_ECHO).unwrap();
    let mut out2 = [0; 128];
    let len = encode_icmpv4_error(&mut out2, ROUTER_V4, &echo, Icmpv4Error::TimeExceeded).unwrap();
    let about_an_error = IpPacket::new_checked(&out2[..len]).unwrap();
    assert_eq!(
        encode_icmpv4_error(
            &mut out,
            ROUTER_V4,
            &about_an_error,
            Icmpv4Error::TimeExceeded
        ),
        Err(EncodeIcmpError::Suppressed)
    );
}

/// IPV4_UDP with other addresses.
fn ipv4_udp_between(source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
    let mut bytes = IPV4_UDP.to_vec();
    bytes[12..16].copy_from_slice(&source);
    bytes[16..20].copy_from_slice(&destination);
    fix_ipv4_checksum(&mut bytes);
    bytes
}

#[test]
fn icmpv4_error_rules() {
    let allowed = |bytes: &[u8]| may_send_icmp_error_for(&IpPacket::new_checked(bytes).unwrap());
    assert!(allowed(&IPV4_UDP));
    assert!(allowed(&IPV4_TCP_SYN));
    assert!(allowed(&IPV4_ICMP_ECHO));
    assert!(allowed(&IPV4_FIRST_FRAGMENT));
    // RFC 1122 §3.2.2: a non-initial fragment.
    assert!(!allowed(&IPV4_LATER_FRAGMENT));
    // An ICMP error message, whatever its type; an unknown type counts as one.
    for icmp_type in [3u8, 4, 5, 11, 12, 99] {
        let mut bytes = IPV4_ICMP_ECHO;
        bytes[20] = icmp_type;
        assert!(!allowed(&bytes), "type {icmp_type}");
    }
    // Destined to a broadcast or multicast address.
    assert!(!allowed(&ipv4_udp_between(
        [192, 0, 2, 1],
        [255, 255, 255, 255]
    )));
    assert!(!allowed(&ipv4_udp_between(
        [192, 0, 2, 1],
        [224, 0, 0, 251]
    )));
    assert!(!allowed(&ipv4_udp_between([192, 0, 2, 1], [239, 1, 2, 3])));
    // From a source that is not a single host.
    for source in [
        [0, 0, 0, 0],
        [0, 1, 2, 3],
        [127, 0, 0, 1],
        [224, 0, 0, 1],
        [240, 0, 0, 1],
        [255, 255, 255, 255],
    ] {
        assert!(
            !allowed(&ipv4_udp_between(source, [198, 51, 100, 7])),
            "{source:?}"
        );
    }
    assert!(allowed(&ipv4_udp_between(
        [223, 255, 255, 254],
        [198, 51, 100, 7]
    )));
}

#[test]
fn icmpv4_error_rules_see_into_a_first_fragment() {
    // The first fragment of an ICMP Destination Unreachable.
    let mut bytes = IPV4_FIRST_FRAGMENT;
    bytes[9] = protocol::ICMP;
    bytes[20] = 3;
    fix_ipv4_checksum(&mut bytes);
    assert!(!may_send_icmp_error_for(
        &IpPacket::new_checked(&bytes).unwrap()
    ));
    // The first fragment of an Echo Request.
    bytes[20] = 8;
    assert!(may_send_icmp_error_for(
        &IpPacket::new_checked(&bytes).unwrap()
    ));
}

/// An IPv6 UDP packet with other addresses.
fn ipv6_udp_between(source: Ipv6Addr, destination: Ipv6Addr) -> Vec<u8> {
    let mut bytes = ipv6_packet(protocol::UDP, &[&UDP_FOR_IPV6]);
    bytes[8..24].copy_from_slice(&source.octets());
    bytes[24..40].copy_from_slice(&destination.octets());
    bytes
}

#[test]
fn icmpv6_error_rules() {
    let allowed = |bytes: &[u8]| may_send_icmp_error_for(&IpPacket::new_checked(bytes).unwrap());
    let host: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let other: Ipv6Addr = "2001:db8::2".parse().unwrap();
    assert!(allowed(&ipv6_extensions_udp()));
    assert!(allowed(&ipv6_first_fragment()));
    assert!(!allowed(&ipv6_later_fragment()));
    // (e.1) an ICMPv6 error, (e.2) a Redirect; an Echo Request is fine.
    for (icmp_type, expected) in [
        (1u8, false),
        (2, false),
        (3, false),
        (137, false),
        (128, true),
    ] {
        let mut icmp = ICMPV6_ECHO;
        icmp[0] = icmp_type;
        assert_eq!(
            allowed(&ipv6_packet(protocol::ICMPV6, &[&icmp])),
            expected,
            "type {icmp_type}"
        );
    }
    // (e.3) destined to a multicast address.
    let multicast: Ipv6Addr = "ff02::1".parse().unwrap();
    assert!(!allowed(&ipv6_udp_between(host, multicast)));
    // (e.6) from the unspecified or a multicast address; loopback too.
    for source in [Ipv6Addr::UNSPECIFIED, multicast, Ipv6Addr::LOCALHOST] {
        assert!(!allowed(&ipv6_udp_between(source, other)), "{source}");
    }
}

#[test]
fn packet_too_big_may_answer_a_multicast_packet() {
    let host: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let bytes = ipv6_udp_between(host, "ff0e::1".parse().unwrap());
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let mut out = [0; 256];
    assert!(
        encode_icmpv6_error(
            &mut out,
            ROUTER_V6,
            &invoking,
            Icmpv6Error::PacketTooBig { mtu: 1280 }
        )
        .is_ok()
    );
    assert_eq!(
        encode_icmpv6_error(
            &mut out,
            ROUTER_V6,
            &invoking,
            Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::Port)
        ),
        Err(EncodeIcmpError::Suppressed)
    );
    // IPv4 has no such exception.
    let bytes = ipv4_udp_between([192, 0, 2, 1], [224, 0, 0, 9]);
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let frag_needed = Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::FragmentationNeeded {
        next_hop_mtu: 576,
    });
    assert_eq!(
        encode_icmpv4_error(&mut out, ROUTER_V4, &invoking, frag_needed),
        Err(EncodeIcmpError::Suppressed)
    );
}

#[test]
fn decrement_ttl_keeps_the_ipv4_checksum_valid() {
    let mut bytes = IPV4_UDP;
    assert_eq!(decrement_hop_limit(&mut bytes), Ok(63));
    let packet = IpPacket::new_checked(&bytes).unwrap();
    assert_eq!(packet.hop_limit(), 63);
    assert_eq!(&bytes[10..12], &[0x4f, 0x91]);
    assert_eq!(bytes[12..], IPV4_UDP[12..]);
}

#[test]
fn decrement_hop_limit_ipv6() {
    let mut bytes = ipv6_extensions_udp();
    assert_eq!(decrement_hop_limit(&mut bytes), Ok(63));
    assert_eq!(IpPacket::new_checked(&bytes).unwrap().hop_limit(), 63);
}

#[test]
fn expiring_hop_limit_is_reported_and_leaves_the_packet_alone() {
    for hop_limit in [0, 1] {
        let mut bytes = IPV4_UDP;
        bytes[8] = hop_limit;
        fix_ipv4_checksum(&mut bytes);
        let before = bytes;
        assert_eq!(decrement_hop_limit(&mut bytes), Err(HopLimitError::Expired));
        assert_eq!(bytes, before);

        let mut bytes = ipv6_extensions_udp();
        bytes[7] = hop_limit;
        assert_eq!(decrement_hop_limit(&mut bytes), Err(HopLimitError::Expired));
        assert_eq!(bytes[7], hop_limit);
    }
}

#[test]
fn decrement_hop_limit_errors() {
    assert_eq!(decrement_hop_limit(&mut []), Err(HopLimitError::Truncated));
    assert_eq!(
        decrement_hop_limit(&mut IPV4_UDP[..19].to_vec()),
        Err(HopLimitError::Truncated)
    );
    assert_eq!(
        decrement_hop_limit(&mut ipv6_extensions_udp()[..39].to_vec()),
        Err(HopLimitError::Truncated)
    );
    assert_eq!(
        decrement_hop_limit(&mut [0x50; 40]),
        Err(HopLimitError::UnsupportedVersion(5))
    );
}

#[test]
fn time_exceeded_after_an_expired_ttl_quotes_the_packet_as_received() {
    let mut bytes = IPV4_UDP;
    bytes[8] = 1;
    fix_ipv4_checksum(&mut bytes);
    assert_eq!(decrement_hop_limit(&mut bytes), Err(HopLimitError::Expired));
    let invoking = IpPacket::new_checked(&bytes).unwrap();
    let mut out = [0; 128];
    let len =
        encode_icmpv4_error(&mut out, ROUTER_V4, &invoking, Icmpv4Error::TimeExceeded).unwrap();
    let reply = IpPacket::new_checked(&out[..len]).unwrap();
    let Transport::Icmpv4(icmp) = reply.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (11, 0));
    assert_eq!(icmp.payload(), &bytes);
}

#[test]
fn errors_display_a_message() {
    assert_eq!(
        EncodeUdpError::PayloadTooLarge {
            len: 70_000,
            max: 65_507
        }
        .to_string(),
        "UDP payload of 70000 bytes exceeds the maximum of 65507"
    );
    assert_eq!(
        EncodeIcmpError::Suppressed.to_string(),
        "no ICMP error may be sent about this packet"
    );
    assert_eq!(
        HopLimitError::Expired.to_string(),
        "hop limit exceeded in transit"
    );
}

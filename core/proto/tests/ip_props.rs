//! Property tests: arbitrary input never panics, builders round-trip through the view and
//! through etherparse, the TTL decrement keeps the checksum right.
#![allow(missing_docs, clippy::doc_markdown)]

mod ip_fixtures;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{IpNumber, IpSlice, Ipv4Header, PacketBuilder, SlicedPacket, TransportSlice};
use ip_fixtures::*;
use proptest::prelude::*;
use veil_proto::ip::{
    FlowProtocol, HopLimitError, Icmpv4Error, Icmpv6Error, IpPacket, Transport,
    decrement_hop_limit, encode_icmpv4_error, encode_icmpv6_error, encode_udp, icmp_error_len,
    protocol,
};

/// Checks what must hold of any packet the view accepts.
fn check_invariants(input: &[u8], packet: &IpPacket<'_>) {
    let bytes = packet.as_bytes();
    assert!(input.starts_with(bytes));
    assert!(packet.header_len() <= bytes.len());
    assert!(bytes.ends_with(packet.payload()));
    match packet.transport() {
        Transport::Udp(udp) => {
            assert_eq!(usize::from(udp.length()), 8 + udp.payload().len());
            assert!(packet.flow_key().is_some());
        }
        Transport::Tcp(tcp) => assert!(tcp.header_len() + tcp.payload().len() <= bytes.len()),
        Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
            assert!(icmp.payload().len() + 8 <= bytes.len());
        }
        Transport::Fragment => assert!(packet.fragment().is_some()),
        Transport::Other => assert!(packet.flow_key().is_none()),
    }
    // The helpers run on anything that parsed.
    let _ = veil_proto::ip::may_send_icmp_error_for(packet);
    let _ = icmp_error_len(packet);
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(s)), sp),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(d)), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sp),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), dp)
            )),
    ]
}

/// Valid packets of every kind the fixtures hold.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        IPV4_UDP.to_vec(),
        IPV4_TCP_SYN.to_vec(),
        IPV4_ICMP_ECHO.to_vec(),
        IPV4_AH_UDP.to_vec(),
        IPV4_FIRST_FRAGMENT.to_vec(),
        IPV4_LATER_FRAGMENT.to_vec(),
        ipv6_extensions_udp(),
        ipv6_later_fragment(),
        ipv6_first_fragment(),
        ipv6_atomic_fragment(),
        ipv6_packet(protocol::ICMPV6, &[&ICMPV6_ECHO]),
    ])
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(packet) = IpPacket::new_checked(&bytes) {
            check_invariants(&bytes, &packet);
        }
    }

    #[test]
    fn ip_shaped_bytes_never_panic(
        first in prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60]),
        rest in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        // Make the length fields (and the IPv4 checksum) right, so the walk goes deeper.
        if first >> 4 == 4 && bytes.len() >= usize::from(first & 0x0f) * 4 {
            let len = u16::try_from(bytes.len()).unwrap();
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
            fix_ipv4_checksum(&mut bytes);
        } else if first >> 4 == 6 && bytes.len() >= 40 {
            let len = u16::try_from(bytes.len() - 40).unwrap();
            bytes[4..6].copy_from_slice(&len.to_be_bytes());
        }
        if let Ok(packet) = IpPacket::new_checked(&bytes) {
            check_invariants(&bytes, &packet);
        }
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        packet in valid_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_checksum in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = packet;
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if fix_checksum && bytes[0] >> 4 == 4 && usize::from(bytes[0] & 0xf) * 4 <= bytes.len() {
            fix_ipv4_checksum(&mut bytes);
        }
        let cut = cut.index(bytes.len() + 1);
        for candidate in [&bytes[..], &bytes[..cut]] {
            if let Ok(packet) = IpPacket::new_checked(candidate) {
                check_invariants(candidate, &packet);
            }
        }
    }

    /// Where etherparse and the view both accept a whole (unfragmented) packet, they find
    /// the same addresses, upper-layer protocol and payload.
    #[test]
    fn agrees_with_etherparse_on_mutated_packets(
        packet in valid_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = packet;
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let (Ok(ours), Ok(theirs)) = (IpPacket::new_checked(&bytes), IpSlice::from_slice(&bytes))
        else {
            return Ok(());
        };
        // etherparse reads IPv6 Payload Length 0 as "the rest" and walks into later
        // fragments; the view does neither, by design.
        let zero_payload_len = bytes[0] >> 4 == 6 && bytes[4..6] == [0, 0];
        prop_assume!(ours.fragment().is_none() && !zero_payload_len);
        prop_assert_eq!(ours.source(), theirs.source_addr());
        prop_assert_eq!(ours.destination(), theirs.destination_addr());
        prop_assert_eq!(ours.protocol(), theirs.payload_ip_number().0);
        prop_assert_eq!(ours.payload(), theirs.payload().payload);
    }

    /// UDP and TCP packets from etherparse's builder read back the same through the view.
    #[test]
    fn reads_what_etherparse_builds(
        (source, destination) in socket_pair(),
        ttl in 1u8..,
        tcp in any::<bool>(),
        sequence in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        let builder = match (source.ip(), destination.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), ttl),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), ttl),
            _ => unreachable!("socket_pair keeps one family"),
        };
        let mut buf = vec![0; 1600];
        let len = if tcp {
            builder
                .tcp(source.port(), destination.port(), sequence, 1000)
                .syn()
                .write_to_slice(&mut buf, &payload)
        } else {
            builder
                .udp(source.port(), destination.port())
                .write_to_slice(&mut buf, &payload)
        }
        .unwrap();
        let packet = IpPacket::new_checked(&buf[..len]).unwrap();
        prop_assert_eq!(packet.hop_limit(), ttl);
        let key = packet.flow_key().unwrap();
        prop_assert_eq!((key.source, key.destination), (source, destination));
        match packet.transport() {
            Transport::Udp(udp) => {
                prop_assert!(!tcp);
                prop_assert_eq!(key.protocol, FlowProtocol::Udp);
                prop_assert_eq!(udp.payload(), &payload[..]);
                prop_assert!(udp.checksum_valid());
            }
            Transport::Tcp(view) => {
                prop_assert!(tcp);
                prop_assert_eq!(view.sequence_number(), sequence);
                prop_assert_eq!(view.payload(), &payload[..]);
                prop_assert!(view.checksum_valid());
            }
            other => prop_assert!(false, "unexpected transport {:?}", other),
        }
    }

    /// What `encode_udp` writes, the view and etherparse read back, checksums included.
    #[test]
    fn encode_udp_round_trips(
        (source, destination) in socket_pair(),
        payload in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        let mut buf = vec![0; 1500];
        let len = encode_udp(&mut buf, source, destination, &payload).unwrap();
        let packet = IpPacket::new_checked(&buf[..len]).unwrap();
        let key = packet.flow_key().unwrap();
        prop_assert_eq!((key.source, key.destination), (source, destination));
        let Transport::Udp(udp) = packet.transport() else {
            return Err(TestCaseError::fail("not UDP"));
        };
        prop_assert_eq!(udp.payload(), &payload[..]);
        prop_assert!(udp.checksum_valid());

        let sliced = SlicedPacket::from_ip(&buf[..len]).unwrap();
        let Some(TransportSlice::Udp(theirs)) = sliced.transport else {
            return Err(TestCaseError::fail("etherparse found no UDP"));
        };
        let expected = match sliced.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => theirs
                .to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), theirs.payload()),
            Some(etherparse::NetSlice::Ipv6(ip)) => theirs
                .to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), theirs.payload()),
            _ => return Err(TestCaseError::fail("etherparse found no IP")),
        };
        prop_assert_eq!(expected.unwrap(), udp.checksum());
        if let Some(etherparse::NetSlice::Ipv4(ip)) = SlicedPacket::from_ip(&buf[..len]).unwrap().net {
            let header = ip.header().to_header();
            prop_assert_eq!(header.calc_header_checksum(), header.header_checksum);
        }
    }

    /// The RFC 1624 update equals a full recomputation, over any IPv4 header.
    #[test]
    fn ttl_decrement_keeps_the_checksum_valid(
        ttl in any::<u8>(),
        dscp in 0u8..64,
        identification in any::<u16>(),
        dont_fragment in any::<bool>(),
        protocol_number in any::<u8>(),
        source in any::<[u8; 4]>(),
        destination in any::<[u8; 4]>(),
        option_words in prop::collection::vec(any::<[u8; 4]>(), 0..10),
    ) {
        let mut header = Ipv4Header::new(0, ttl, IpNumber(protocol_number), source, destination)
            .unwrap();
        header.dscp = dscp.try_into().unwrap();
        header.identification = identification;
        header.dont_fragment = dont_fragment;
        header.options = option_words.concat().as_slice().try_into().unwrap();
        header.total_len = u16::try_from(header.header_len()).unwrap();
        header.header_checksum = header.calc_header_checksum();
        let mut bytes = header.to_bytes().to_vec();

        match decrement_hop_limit(&mut bytes) {
            Ok(new_ttl) => {
                prop_assert!(ttl >= 2);
                prop_assert_eq!(new_ttl, ttl - 1);
                let (decremented, _) = Ipv4Header::from_slice(&bytes).unwrap();
                prop_assert_eq!(decremented.time_to_live, ttl - 1);
                prop_assert_eq!(decremented.header_checksum, decremented.calc_header_checksum());
                prop_assert_eq!(internet_checksum(&bytes), 0);
            }
            Err(e) => {
                prop_assert!(ttl <= 1);
                prop_assert_eq!(e, HopLimitError::Expired);
                prop_assert_eq!(bytes, header.to_bytes().to_vec());
            }
        }
    }

    /// ICMP errors about any UDP packet stay within their size limit, quote a prefix of the
    /// packet and verify.
    #[test]
    fn icmp_errors_quote_a_prefix_within_the_limit(
        (source, destination) in socket_pair(),
        payload_len in 0usize..1500,
    ) {
        let mut packet_buf = vec![0; 1600];
        let len = encode_udp(&mut packet_buf, source, destination, &vec![7; payload_len]).unwrap();
        let invoking = IpPacket::new_checked(&packet_buf[..len]).unwrap();
        let mut out = [0; 1280];
        let written = if source.is_ipv4() {
            encode_icmpv4_error(&mut out, Ipv4Addr::new(10, 0, 0, 1), &invoking, Icmpv4Error::TimeExceeded)
        } else {
            encode_icmpv6_error(&mut out, Ipv6Addr::LOCALHOST, &invoking, Icmpv6Error::TimeExceeded)
        };
        let Ok(written) = written else {
            // Random addresses may be multicast, loopback...: then no error is allowed.
            prop_assert!(!veil_proto::ip::may_send_icmp_error_for(&invoking));
            return Ok(());
        };
        prop_assert_eq!(written, icmp_error_len(&invoking));
        let limit = if source.is_ipv4() { 576 } else { 1280 };
        prop_assert!(written <= limit);
        let reply = IpPacket::new_checked(&out[..written]).unwrap();
        let (Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp)) = reply.transport() else {
            return Err(TestCaseError::fail("not ICMP"));
        };
        prop_assert!(icmp.checksum_valid());
        prop_assert!(invoking.as_bytes().starts_with(icmp.payload()));
        prop_assert_eq!(
            icmp.payload().len(),
            invoking.as_bytes().len().min(if source.is_ipv4() { 548 } else { 1232 })
        );
    }
}

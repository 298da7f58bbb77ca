//! `veil_proto::ip` on a raw packet.
//!
//! A packet that validates has consistent views: its bytes are the front of the input, its
//! payload their tail, its transport view's lengths add up, and its flow key reverses. Each
//! ICMP error that may answer it is built, then read back with the same view: addresses
//! swapped, type and code as asked, a valid checksum, and the packet quoted as received.
//! The hop-limit decrement on a copy leaves a packet that still validates, one hop lower
//! and otherwise unchanged; on bytes that do not validate it must not panic either.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use veil_proto::ip::{
    EncodeIcmpError, HopLimitError, ICMPV4_ERROR_MAX_LEN, ICMPV6_ERROR_MAX_LEN, Icmpv4Error,
    Icmpv4Unreachable, Icmpv6Error, Icmpv6Unreachable, IpPacket, IpVersion, Transport,
    decrement_hop_limit, encode_icmpv4_error, encode_icmpv6_error, icmp_error_len,
    may_send_icmp_error_for, protocol,
};

/// The edge's own addresses, as sources of ICMP errors.
const EDGE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EDGE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

const ICMPV4_ERRORS: [(Icmpv4Error, u8, u8, [u8; 4]); 3] = [
    (
        Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::Port),
        3,
        3,
        [0; 4],
    ),
    (
        Icmpv4Error::DestinationUnreachable(Icmpv4Unreachable::FragmentationNeeded {
            next_hop_mtu: 1280,
        }),
        3,
        4,
        [0, 0, 5, 0],
    ),
    (Icmpv4Error::TimeExceeded, 11, 0, [0; 4]),
];

const ICMPV6_ERRORS: [(Icmpv6Error, u8, u8, [u8; 4]); 3] = [
    (
        Icmpv6Error::DestinationUnreachable(Icmpv6Unreachable::Port),
        1,
        4,
        [0; 4],
    ),
    (Icmpv6Error::PacketTooBig { mtu: 1280 }, 2, 0, [0, 0, 5, 0]),
    (Icmpv6Error::TimeExceeded, 3, 0, [0; 4]),
];

/// Validates `data` and checks views, ICMP errors and the hop-limit decrement.
///
/// # Panics
///
/// When a view, a built error or a decremented packet is inconsistent.
pub fn run(data: &[u8]) {
    let Ok(packet) = IpPacket::new_checked(data) else {
        let mut copy = data.to_vec();
        if decrement_hop_limit(&mut copy).is_err() {
            assert_eq!(copy, data, "nothing is written on error");
        }
        return;
    };
    check_views(data, &packet);
    check_icmp_errors(&packet);
    check_decrement(&packet);
}

pub(crate) fn check_views(data: &[u8], packet: &IpPacket<'_>) {
    let bytes = packet.as_bytes();
    assert!(data.starts_with(bytes));
    assert!(bytes.ends_with(packet.payload()));
    assert_eq!(packet.header_len() + packet.payload().len(), bytes.len());
    assert_eq!(packet.source().is_ipv4(), packet.version() == IpVersion::V4);
    assert_eq!(
        packet.destination().is_ipv4(),
        packet.version() == IpVersion::V4
    );
    match packet.transport() {
        Transport::Udp(udp) => {
            assert_eq!(packet.protocol(), protocol::UDP);
            assert_eq!(usize::from(udp.length()), 8 + udp.payload().len());
            assert!(packet.payload().len() >= usize::from(udp.length()));
        }
        Transport::Tcp(tcp) => {
            assert_eq!(packet.protocol(), protocol::TCP);
            assert!(tcp.header_len() >= 20);
            assert_eq!(tcp.options().len(), tcp.header_len() - 20);
            assert_eq!(
                tcp.header_len() + tcp.payload().len(),
                packet.payload().len()
            );
        }
        Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
            assert_eq!(8 + icmp.payload().len(), packet.payload().len());
        }
        Transport::Fragment => assert!(packet.fragment().is_some()),
        Transport::Other => {}
    }
    if packet.fragment().is_some() {
        assert_eq!(packet.transport(), Transport::Fragment);
    }
    match packet.flow_key() {
        Some(key) => {
            assert!(match packet.transport() {
                Transport::Udp(_) | Transport::Tcp(_) => true,
                Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
                    icmp.echo_identifier() == Some(key.source.port())
                }
                _ => false,
            });
            assert_eq!(key.source.ip(), packet.source());
            assert_eq!(key.destination.ip(), packet.destination());
            assert_eq!(key.reversed().reversed(), key);
        }
        None => assert!(match packet.transport() {
            Transport::Udp(_) | Transport::Tcp(_) => false,
            Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => icmp.echo_identifier().is_none(),
            _ => true,
        }),
    }
}

/// Builds each ICMP error about `invoking` and reads it back.
pub(crate) fn check_icmp_errors(invoking: &IpPacket<'_>) {
    let mut out = [0; ICMPV6_ERROR_MAX_LEN];
    let allowed = may_send_icmp_error_for(invoking);
    match invoking.version() {
        IpVersion::V4 => {
            for (message, icmp_type, code, rest) in ICMPV4_ERRORS {
                let built = encode_icmpv4_error(&mut out, EDGE_V4, invoking, message);
                check_icmp_error(
                    invoking,
                    built,
                    Some(allowed),
                    &out,
                    (icmp_type, code, rest),
                );
            }
            let mismatch = encode_icmpv6_error(&mut out, EDGE_V6, invoking, ICMPV6_ERRORS[0].0);
            assert_eq!(mismatch, Err(EncodeIcmpError::VersionMismatch));
        }
        IpVersion::V6 => {
            for (message, icmp_type, code, rest) in ICMPV6_ERRORS {
                let built = encode_icmpv6_error(&mut out, EDGE_V6, invoking, message);
                // Packet Too Big may answer a multicast destination, the one exception, which
                // `may_send_icmp_error_for` does not tell about: there either verdict goes.
                let exception = matches!(message, Icmpv6Error::PacketTooBig { .. })
                    && invoking.destination().is_multicast();
                let allowed = (!exception).then_some(allowed);
                check_icmp_error(invoking, built, allowed, &out, (icmp_type, code, rest));
            }
            let mismatch = encode_icmpv4_error(&mut out, EDGE_V4, invoking, ICMPV4_ERRORS[0].0);
            assert_eq!(mismatch, Err(EncodeIcmpError::VersionMismatch));
        }
    }
}

fn check_icmp_error(
    invoking: &IpPacket<'_>,
    built: Result<usize, EncodeIcmpError>,
    allowed: Option<bool>,
    out: &[u8],
    (icmp_type, code, rest): (u8, u8, [u8; 4]),
) {
    let len = match built {
        Ok(len) => len,
        Err(e) => {
            assert_eq!(e, EncodeIcmpError::Suppressed);
            assert_ne!(allowed, Some(true), "an allowed error was suppressed");
            return;
        }
    };
    assert_ne!(allowed, Some(false), "a forbidden error was built");
    assert_eq!(len, icmp_error_len(invoking));
    let (max, edge) = match invoking.version() {
        IpVersion::V4 => (ICMPV4_ERROR_MAX_LEN, IpAddr::V4(EDGE_V4)),
        IpVersion::V6 => (ICMPV6_ERROR_MAX_LEN, IpAddr::V6(EDGE_V6)),
    };
    assert!(len <= max);
    let error = IpPacket::new_checked(&out[..len]).expect("a built ICMP error validates");
    assert_eq!(error.as_bytes().len(), len);
    assert_eq!(error.source(), edge);
    assert_eq!(error.destination(), invoking.source());
    assert_eq!(error.fragment(), None);
    let (Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp)) = error.transport() else {
        panic!("an ICMP error is {:?}", error.transport());
    };
    assert_eq!(
        (icmp.icmp_type(), icmp.code(), icmp.rest_of_header()),
        (icmp_type, code, rest)
    );
    assert!(icmp.is_error());
    assert!(icmp.checksum_valid());
    assert!(invoking.as_bytes().starts_with(icmp.payload()));
    assert!(
        !may_send_icmp_error_for(&error),
        "never an error about an error"
    );
}

fn check_decrement(packet: &IpPacket<'_>) {
    let mut copy = packet.as_bytes().to_vec();
    match decrement_hop_limit(&mut copy) {
        Ok(hop_limit) => {
            assert_eq!(hop_limit, packet.hop_limit() - 1);
            let forwarded = IpPacket::new_checked(&copy).expect("still a valid packet");
            assert_eq!(forwarded.hop_limit(), hop_limit);
            assert_eq!(forwarded.source(), packet.source());
            assert_eq!(forwarded.destination(), packet.destination());
            assert_eq!(forwarded.protocol(), packet.protocol());
            assert_eq!(forwarded.fragment(), packet.fragment());
            assert_eq!(forwarded.payload(), packet.payload());
        }
        Err(e) => {
            assert_eq!(e, HopLimitError::Expired);
            assert!(packet.hop_limit() <= 1);
            assert_eq!(copy, packet.as_bytes());
        }
    }
}

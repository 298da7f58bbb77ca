//! `veil_proto::ip` builders: an arbitrary UDP datagram (IPv4 or IPv6, any ports and
//! payload) built with [`encode_udp`] reads back through [`IpPacket::new_checked`] with
//! every field as given and valid checksums; [`encode_udp_in_place`] writes the same bytes
//! around a payload already in place; and the ICMP errors about it read back too.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::ip::{
    DEFAULT_HOP_LIMIT, EncodeUdpError, FlowKey, FlowProtocol, IpPacket, IpVersion, Transport,
    encode_udp, encode_udp_in_place, protocol, udp_headroom,
};

use crate::ip::{check_icmp_errors, check_views};

#[derive(Debug, Arbitrary)]
struct Input {
    v6: bool,
    /// Mixes the IP versions, which must be refused.
    mixed: bool,
    source: u128,
    destination: u128,
    source_port: u16,
    destination_port: u16,
    payload: Vec<u8>,
}

fn address(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        // The low 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

/// Builds an arbitrary UDP packet and reads it back.
///
/// # Panics
///
/// When a field does not come back exactly.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let source = SocketAddr::new(address(input.v6, input.source), input.source_port);
    let destination = SocketAddr::new(
        address(input.v6 != input.mixed, input.destination),
        input.destination_port,
    );
    let payload = input.payload.as_slice();
    let version = if input.v6 {
        IpVersion::V6
    } else {
        IpVersion::V4
    };
    let headroom = udp_headroom(version);
    let mut out = vec![0; headroom + payload.len()];
    let len = match encode_udp(&mut out, source, destination, payload) {
        Ok(len) => len,
        Err(e) => {
            assert_eq!(e, EncodeUdpError::AddressFamilyMismatch);
            assert!(input.mixed);
            return;
        }
    };
    assert!(!input.mixed);
    assert_eq!(len, out.len());

    let packet = IpPacket::new_checked(&out).expect("a built packet validates");
    check_views(&out, &packet);
    assert_eq!(packet.version(), version);
    assert_eq!(packet.source(), source.ip());
    assert_eq!(packet.destination(), destination.ip());
    assert_eq!(packet.protocol(), protocol::UDP);
    assert_eq!(packet.hop_limit(), DEFAULT_HOP_LIMIT);
    assert_eq!(packet.fragment(), None);
    assert!(packet.dont_fragment());
    assert_eq!(packet.header_len() + 8, headroom);
    let Transport::Udp(udp) = packet.transport() else {
        panic!("a UDP packet reads as {:?}", packet.transport());
    };
    assert_eq!(udp.source_port(), source.port());
    assert_eq!(udp.destination_port(), destination.port());
    assert_eq!(udp.payload(), payload);
    assert!(udp.checksum_valid());
    assert_eq!(
        packet.flow_key(),
        Some(FlowKey {
            protocol: FlowProtocol::Udp,
            source,
            destination,
        })
    );

    let mut in_place = vec![0xee; headroom];
    in_place.extend_from_slice(payload);
    assert_eq!(
        encode_udp_in_place(&mut in_place, source, destination, payload.len()),
        Ok(len)
    );
    assert_eq!(in_place, out);
    assert!(encode_udp(&mut in_place[..len - 1], source, destination, payload).is_err());

    check_icmp_errors(&packet);
}

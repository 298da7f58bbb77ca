//! PROXY protocol v1: the spec's examples, every malformation with its exact error, and
//! the encoder.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use veil_proto::BufferTooSmall;
use veil_proto::proxy_protocol::{
    Addresses, Command, DecodeError, Decoded, Endpoint, Header, Transport, UnixAddr, V1_MAX_LEN,
    V1Error, V1Line, Version, decode,
};

/// Decodes `input`, expecting a complete header; returns it and its length.
fn complete(input: &[u8]) -> (Header<'_>, usize) {
    match decode(input) {
        Ok(Decoded::Complete { header, len }) => (header, len),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn v1_error(input: &[u8]) -> V1Error {
    match decode(input) {
        Err(DecodeError::V1(e)) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn v4(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

fn v6(ip: &str, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(ip.parse().expect("test IPv6 literal"), port, 0, 0)
}

#[test]
fn decodes_the_spec_example_before_an_http_request() {
    // proxy-protocol.txt §2.1, "An example of such a line before an HTTP request".
    let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n\
                  GET / HTTP/1.1\r\n\
                  Host: 192.168.0.11\r\n\
                  \r\n";
    let (header, len) = complete(input);
    assert_eq!(len, 47);
    assert_eq!(
        &input[len..],
        b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    );
    assert_eq!(
        header,
        Header {
            version: Version::V1,
            command: Command::Proxy,
            transport: Transport::Stream,
            addresses: Addresses::Ipv4 {
                source: v4([192, 168, 0, 1], 56324),
                destination: v4([192, 168, 0, 11], 443),
            },
            tlvs: veil_proto::proxy_protocol::Tlvs::EMPTY,
        }
    );
}

#[test]
fn decodes_the_spec_maximum_tcp4_line() {
    // proxy-protocol.txt §2.1: the longest TCP/IPv4 line, 56 chars.
    let input = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    let (header, len) = complete(input);
    assert_eq!(len, 56);
    assert_eq!(
        header.addresses,
        Addresses::Ipv4 {
            source: v4([255; 4], 65535),
            destination: v4([255; 4], 65535),
        }
    );
}

const FULL_V6: &str = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

#[test]
fn decodes_the_spec_maximum_tcp6_line() {
    // proxy-protocol.txt §2.1: the longest TCP/IPv6 line, 104 chars.
    let input = format!("PROXY TCP6 {FULL_V6} {FULL_V6} 65535 65535\r\n");
    let (header, len) = complete(input.as_bytes());
    assert_eq!(len, 104);
    assert_eq!(header.transport, Transport::Stream);
    assert_eq!(
        header.addresses,
        Addresses::Ipv6 {
            source: v6(FULL_V6, 65535),
            destination: v6(FULL_V6, 65535),
        }
    );
}

#[test]
fn decodes_unknown_short_and_worst_case_forms() {
    // proxy-protocol.txt §2.1: "PROXY UNKNOWN\r\n" => 15 chars.
    let (header, len) = complete(b"PROXY UNKNOWN\r\n");
    assert_eq!(len, 15);
    assert_eq!(header.transport, Transport::Unspec);
    assert_eq!(header.addresses, Addresses::Unspecified);
    // The worst case, 107 chars: the rest of an UNKNOWN line is ignored.
    let worst = format!("PROXY UNKNOWN {FULL_V6} {FULL_V6} 65535 65535\r\n");
    assert_eq!(worst.len(), V1_MAX_LEN);
    let (header, len) = complete(worst.as_bytes());
    assert_eq!(len, 107);
    assert_eq!(header.addresses, Addresses::Unspecified);
    // Anything at all, double spaces included, after "UNKNOWN ".
    let (header, len) = complete(b"PROXY UNKNOWN  not  an address\r\nxyz");
    assert_eq!((header.addresses, len), (Addresses::Unspecified, 32));
}

#[test]
fn accepts_the_compressed_and_mapped_ipv6_forms() {
    let (header, _) = complete(b"PROXY TCP6 ::1 2001:DB8::0001 0 1\r\n");
    assert_eq!(
        header.addresses,
        Addresses::Ipv6 {
            source: v6("::1", 0),
            destination: v6("2001:db8::1", 1),
        }
    );
    let (header, _) = complete(b"PROXY TCP6 ::ffff:10.0.0.1 :: 1 2\r\n");
    assert_eq!(
        header.addresses.source(),
        Some(v6("::ffff:a00:1", 1).into())
    );
}

#[test]
fn waits_for_the_crlf() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    for end in 0..line.len() {
        assert_eq!(decode(&line[..end]), Ok(Decoded::Incomplete), "{end}");
    }
    // Even a malformed field is only judged once the line is complete.
    assert_eq!(
        decode(b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2"),
        Ok(Decoded::Incomplete)
    );
}

#[test]
fn refuses_a_missing_space_after_proxy_at_the_sixth_byte() {
    assert_eq!(v1_error(b"PROXYX"), V1Error::NoSpaceAfterProxy);
    assert_eq!(v1_error(b"PROXY\r\n"), V1Error::NoSpaceAfterProxy);
    assert_eq!(v1_error(b"PROXY\tTCP4"), V1Error::NoSpaceAfterProxy);
}

#[test]
fn refuses_a_line_without_crlf_in_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'a');
    assert_eq!(decode(&long), Ok(Decoded::Incomplete));
    long.push(b'a');
    assert_eq!(v1_error(&long), V1Error::LineTooLong);
    // A 108-byte line: the CRLF comes one byte too late.
    long.extend_from_slice(b"\r\n");
    assert_eq!(v1_error(&long), V1Error::LineTooLong);
    // CR at 107th byte, LF at the 108th.
    let mut late = b"PROXY UNKNOWN ".to_vec();
    late.resize(V1_MAX_LEN - 1, b'a');
    late.extend_from_slice(b"\r\n");
    assert_eq!(v1_error(&late), V1Error::LineTooLong);
}

#[test]
fn refuses_a_bare_line_feed() {
    assert_eq!(
        v1_error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        V1Error::BareLineFeed
    );
    assert_eq!(v1_error(b"PROXY UNKNOWN\n"), V1Error::BareLineFeed);
    assert_eq!(v1_error(b"PROXY \n"), V1Error::BareLineFeed);
    // A bare CR is no line end: it stays in the last field.
    assert_eq!(
        v1_error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
        V1Error::InvalidPort(Endpoint::Destination)
    );
}

#[test]
fn refuses_unknown_protocols() {
    for line in [
        &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
    ] {
        assert_eq!(v1_error(line), V1Error::UnknownProtocol, "{line:?}");
    }
}

#[test]
fn refuses_anything_but_single_spaces() {
    for line in [
        &b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 \r\n",
        b"PROXY \r\n",
    ] {
        assert_eq!(v1_error(line), V1Error::EmptyField, "{line:?}");
    }
}

#[test]
fn refuses_a_wrong_number_of_fields() {
    assert_eq!(
        v1_error(b"PROXY TCP4\r\n"),
        V1Error::FieldCount { found: 0 }
    );
    assert_eq!(
        v1_error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        V1Error::FieldCount { found: 3 }
    );
    assert_eq!(
        v1_error(b"PROXY TCP6 ::1 ::2 1 2 3\r\n"),
        V1Error::FieldCount { found: 5 }
    );
}

#[test]
fn refuses_addresses_not_of_the_declared_family() {
    use Endpoint::{Destination, Source};
    for (line, error) in [
        (
            &b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"[..],
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
            V1Error::InvalidAddress(Destination),
        ),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
            V1Error::InvalidAddress(Destination),
        ),
        // "Heading zeroes are not permitted": 01 could be octal.
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP6 ::1 1::2::3 1 2\r\n",
            V1Error::InvalidAddress(Destination),
        ),
        (
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
            V1Error::InvalidAddress(Source),
        ),
    ] {
        assert_eq!(v1_error(line), error, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn refuses_ports_out_of_range_signed_or_zero_padded() {
    use Endpoint::{Destination, Source};
    for (line, error) in [
        (
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"[..],
            V1Error::InvalidPort(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",
            V1Error::InvalidPort(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            V1Error::InvalidPort(Source),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            V1Error::InvalidPort(Destination),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
            V1Error::InvalidPort(Destination),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n",
            V1Error::InvalidPort(Destination),
        ),
    ] {
        assert_eq!(v1_error(line), error, "{:?}", String::from_utf8_lossy(line));
    }
    // A lone zero is a valid port.
    let (header, _) = complete(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n");
    assert_eq!(header.addresses.source(), Some(v4([1, 2, 3, 4], 0).into()));
}

#[test]
fn encodes_tcp4_tcp6_and_unknown_lines() {
    let mut out = [0; V1_MAX_LEN];
    let tcp4 = Addresses::Ipv4 {
        source: v4([192, 168, 0, 1], 56324),
        destination: v4([192, 168, 0, 11], 443),
    };
    let len = V1Line::new(&tcp4).encode(&mut out).unwrap();
    assert_eq!(
        &out[..len],
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );

    let tcp6 = Addresses::Ipv6 {
        source: v6("2001:db8::1", 1),
        destination: v6("::ffff:1.2.3.4", 65535),
    };
    let len = V1Line::new(&tcp6).encode(&mut out).unwrap();
    assert_eq!(
        &out[..len],
        b"PROXY TCP6 2001:db8::1 ::ffff:102:304 1 65535\r\n"
    );

    let full = Addresses::Ipv6 {
        source: v6(FULL_V6, 65535),
        destination: v6(FULL_V6, 65535),
    };
    assert_eq!(V1Line::new(&full).encoded_len(), 104);

    let path = [0; UnixAddr::LEN];
    for unknown in [
        Addresses::Unspecified,
        Addresses::Unix {
            source: UnixAddr::new(&path),
            destination: UnixAddr::new(&path),
        },
    ] {
        let len = V1Line::new(&unknown).encode(&mut out).unwrap();
        assert_eq!(&out[..len], b"PROXY UNKNOWN\r\n");
    }
    assert_eq!(V1Line::new(&tcp4).to_string().len(), 47);
}

#[test]
fn encode_reports_the_size_needed_and_writes_nothing() {
    let tcp4 = Addresses::Ipv4 {
        source: v4([192, 168, 0, 1], 56324),
        destination: v4([192, 168, 0, 11], 443),
    };
    let mut out = [0xaa; 46];
    assert_eq!(
        V1Line::new(&tcp4).encode(&mut out),
        Err(BufferTooSmall {
            needed: 47,
            available: 46
        })
    );
    assert_eq!(out, [0xaa; 46]);
}

#[test]
fn decoded_ipv6_keeps_no_scope() {
    let (header, _) = complete(b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n");
    let Addresses::Ipv6 { source, .. } = header.addresses else {
        panic!("{header:?}");
    };
    assert_eq!((source.flowinfo(), source.scope_id()), (0, 0));
    assert_eq!(*source.ip(), "fe80::1".parse::<Ipv6Addr>().unwrap());
}

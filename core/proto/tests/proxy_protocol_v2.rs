//! PROXY protocol v2: hand-made and captured fixtures, every malformation with its exact
//! error, TLVs, CRC32C, and the encoder.

use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};

use veil_proto::BufferTooSmall;
use veil_proto::proxy_protocol::{
    Addresses, Command, DecodeError, Decoded, Decoder, Detection, Header, TlvError, Transport,
    UnixAddr, V2_MAX_LEN, V2_SIGNATURE, V2EncodeError, V2Encoder, V2Error, Version, decode, detect,
    tlv,
};

/// The 12-byte signature: \r\n\r\n\0\r\nQUIT\n.
const SIG: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

fn with_sig(rest: &[u8]) -> Vec<u8> {
    [&SIG[..], rest].concat()
}

fn complete(input: &[u8]) -> (Header<'_>, usize) {
    match decode(input) {
        Ok(Decoded::Complete { header, len }) => (header, len),
        other => panic!("{input:02x?}: {other:?}"),
    }
}

fn v2_error(input: &[u8]) -> V2Error {
    match decode(input) {
        Err(DecodeError::V2(e)) => e,
        other => panic!("{input:02x?}: {other:?}"),
    }
}

fn tlv_list<'a>(header: &Header<'a>) -> Vec<(u8, &'a [u8])> {
    header.tlvs.iter().map(|t| (t.kind, t.value)).collect()
}

fn v6(ip: &str, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(ip.parse().expect("test IPv6 literal"), port, 0, 0)
}

#[test]
fn signature_is_the_spec_bytes() {
    assert_eq!(V2_SIGNATURE, SIG);
}

#[test]
fn decodes_a_haproxy_tcp4_capture_and_keeps_the_request() {
    // haproxy's v2 header in front of a curl request, as captured by netcat (hexdump in
    // github.com/seriousben/experiment-proxy-protocol README).
    let input = with_sig(&[
        0x21, // version 2, PROXY
        0x11, // INET, STREAM
        0x00, 0x0c, // 12 bytes of addresses follow
        0xac, 0x13, 0x00, 0x01, // source 172.19.0.1
        0xac, 0x13, 0x00, 0x03, // destination 172.19.0.3
        0xa6, 0x52, // source port 42578
        0x00, 0x50, // destination port 80
        b'G', b'E', b'T', b' ', b'/', // the application's bytes
    ]);
    let (header, len) = complete(&input);
    assert_eq!(len, 28);
    assert_eq!(&input[len..], b"GET /");
    assert_eq!(header.version, Version::V2);
    assert_eq!(header.command, Command::Proxy);
    assert_eq!(header.transport, Transport::Stream);
    assert_eq!(
        header.addresses,
        Addresses::Ipv4 {
            source: SocketAddrV4::new(Ipv4Addr::new(172, 19, 0, 1), 42578),
            destination: SocketAddrV4::new(Ipv4Addr::new(172, 19, 0, 3), 80),
        }
    );
    assert!(header.tlvs.is_empty());
}

/// UDP over IPv6 with ALPN, AUTHORITY, `UNIQUE_ID`, NOOP and a CRC32C computed by an
/// independent bit-at-a-time implementation (Python) over this exact header.
fn udp6_with_tlvs() -> Vec<u8> {
    with_sig(&[
        0x21, // version 2, PROXY
        0x22, // INET6, DGRAM
        0x00, 0x48, // 72 bytes: 36 of addresses, 36 of TLVs
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // 2001:db8::2
        0xc0, 0x00, // source port 49152
        0x01, 0xbb, // destination port 443
        0x01, 0x00, 0x02, b'h', b'3', // ALPN "h3"
        0x02, 0x00, 0x0b, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o',
        b'm', // AUTHORITY "example.com"
        0x05, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef, // UNIQUE_ID
        0x04, 0x00, 0x00, // NOOP, empty
        0x03, 0x00, 0x04, 0xf9, 0xf3, 0x8c, 0xe1, // CRC32C 0xf9f38ce1
    ])
}

#[test]
fn decodes_udp6_with_tlvs_and_a_valid_crc32c() {
    let input = udp6_with_tlvs();
    let (header, len) = complete(&input);
    assert_eq!(len, 88);
    assert_eq!(header.transport, Transport::Datagram);
    assert_eq!(
        header.addresses,
        Addresses::Ipv6 {
            source: v6("2001:db8::1", 49152),
            destination: v6("2001:db8::2", 443),
        }
    );
    assert_eq!(
        tlv_list(&header),
        [
            (tlv::ALPN, &b"h3"[..]),
            (tlv::AUTHORITY, b"example.com"),
            (tlv::UNIQUE_ID, &[0xde, 0xad, 0xbe, 0xef]),
            (tlv::NOOP, b""),
            (tlv::CRC32C, &[0xf9, 0xf3, 0x8c, 0xe1]),
        ]
    );
    assert_eq!(header.tlvs.find(tlv::AUTHORITY), Some(&b"example.com"[..]));
}

#[test]
fn the_encoder_reproduces_the_udp6_fixture() {
    let tlvs: &[(u8, &[u8])] = &[
        (tlv::ALPN, b"h3"),
        (tlv::AUTHORITY, b"example.com"),
        (tlv::UNIQUE_ID, &[0xde, 0xad, 0xbe, 0xef]),
        (tlv::NOOP, b""),
    ];
    let encoder = V2Encoder::proxy(
        Transport::Datagram,
        Addresses::Ipv6 {
            source: v6("2001:db8::1", 49152),
            destination: v6("2001:db8::2", 443),
        },
    )
    .with_tlvs(tlvs)
    .with_crc32c();
    let mut out = [0; 128];
    assert_eq!(encoder.encoded_len(), Ok(88));
    let len = encoder.encode(&mut out).unwrap();
    assert_eq!(&out[..len], &udp6_with_tlvs()[..]);
}

#[test]
fn refuses_a_header_changed_after_its_checksum() {
    let mut input = udp6_with_tlvs();
    input[16 + 31] ^= 0x01; // destination 2001:db8::2 becomes 2001:db8::3
    assert_eq!(
        v2_error(&input),
        V2Error::ChecksumMismatch {
            received: 0xf9f3_8ce1,
            computed: 0x401a_6911,
        }
    );
}

#[test]
fn decodes_local_with_a_checksum() {
    let input = with_sig(&[
        0x20, // version 2, LOCAL
        0x00, // UNSPEC, UNSPEC
        0x00, 0x07, // 7 bytes: just the CRC32C TLV
        0x03, 0x00, 0x04, 0xa9, 0xb8, 0x7e, 0x8f, // CRC32C 0xa9b87e8f
    ]);
    let (header, len) = complete(&input);
    assert_eq!(len, 23);
    assert_eq!(header.command, Command::Local);
    assert_eq!(header.addresses, Addresses::Unspecified);
    let mut out = [0; 23];
    assert_eq!(V2Encoder::local().with_crc32c().encode(&mut out), Ok(23));
    assert_eq!(out[..], input[..]);
}

#[test]
fn decodes_the_plain_local_health_check() {
    let input = with_sig(&[
        0x20, // version 2, LOCAL
        0x00, // UNSPEC, UNSPEC
        0x00, 0x00, // no address
    ]);
    let (header, len) = complete(&input);
    assert_eq!(len, 16);
    assert_eq!(
        (header.command, header.transport, header.addresses),
        (Command::Local, Transport::Unspec, Addresses::Unspecified)
    );
    let mut out = [0; 16];
    assert_eq!(V2Encoder::local().encode(&mut out), Ok(16));
    assert_eq!(out[..], input[..]);
}

#[test]
fn local_ignores_the_family_and_its_addresses() {
    // LOCAL announcing TCP over IPv4 with no address: "must not assume zero is presented",
    // and conversely must accept it.
    let input = with_sig(&[0x20, 0x11, 0x00, 0x00]);
    let (header, _) = complete(&input);
    assert_eq!(header.addresses, Addresses::Unspecified);
    assert_eq!(header.transport, Transport::Stream);
    // LOCAL with a short address block: discarded, not an error.
    let input = with_sig(&[0x20, 0x21, 0x00, 0x04, 1, 2, 3, 4]);
    let (header, len) = complete(&input);
    assert_eq!((header.addresses, len), (Addresses::Unspecified, 20));
    assert!(header.tlvs.is_empty());
    // LOCAL with full IPv4 addresses and a TLV: addresses skipped, the TLV kept.
    let input = with_sig(&[
        0x20, 0x11, 0x00, 0x11, // LOCAL, INET STREAM, 17 bytes
        10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, // addresses, ignored
        0x30, 0x00, 0x02, b'n', b's', // NETNS "ns"
    ]);
    let (header, len) = complete(&input);
    assert_eq!((header.addresses, len), (Addresses::Unspecified, 33));
    assert_eq!(tlv_list(&header), [(tlv::NETNS, &b"ns"[..])]);
}

#[test]
fn unspec_family_or_transport_under_proxy_gives_no_addresses() {
    // PROXY, UNSPEC family: no address block, everything after is TLVs.
    let input = with_sig(&[
        0x21, 0x00, 0x00, 0x05, // PROXY, UNSPEC UNSPEC, 5 bytes
        0x01, 0x00, 0x02, b'h', b'2', // ALPN "h2"
    ]);
    let (header, _) = complete(&input);
    assert_eq!(header.addresses, Addresses::Unspecified);
    assert_eq!(tlv_list(&header), [(tlv::ALPN, &b"h2"[..])]);
    // PROXY, INET with an UNSPEC transport: the 12 bytes are skipped and ignored.
    let input = with_sig(&[
        0x21, 0x10, 0x00, 0x0c, // PROXY, INET UNSPEC, 12 bytes
        1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2,
    ]);
    let (header, len) = complete(&input);
    assert_eq!(
        (header.addresses, header.transport, len),
        (Addresses::Unspecified, Transport::Unspec, 28)
    );
}

#[test]
fn decodes_unix_stream_addresses() {
    let mut input = with_sig(&[
        0x21, // version 2, PROXY
        0x31, // UNIX, STREAM
        0x00, 0xd8, // 216 bytes: two 108-byte paths
    ]);
    let mut source = [0; 108];
    source[..13].copy_from_slice(b"/run/app.sock");
    let mut destination = [0; 108];
    destination[1..5].copy_from_slice(b"abst"); // abstract namespace: leading NUL
    input.extend_from_slice(&source);
    input.extend_from_slice(&destination);
    let (header, len) = complete(&input);
    assert_eq!(len, 232);
    let Addresses::Unix {
        source: src,
        destination: dst,
    } = header.addresses
    else {
        panic!("{header:?}");
    };
    assert_eq!(src.path(), b"/run/app.sock");
    assert_eq!(dst.path(), b"");
    assert_eq!(&dst.raw()[..5], b"\0abst");
    assert_eq!(header.addresses.source(), None);

    let mut out = [0; 232];
    let encoder = V2Encoder::proxy(
        Transport::Stream,
        Addresses::Unix {
            source: UnixAddr::new(&source),
            destination: UnixAddr::new(&destination),
        },
    );
    assert_eq!(encoder.encode(&mut out), Ok(232));
    assert_eq!(out[..], input[..]);
}

#[test]
fn decodes_the_ssl_tlv_sub_structure() {
    let input = with_sig(&[
        0x21, 0x11, 0x00, 0x3d, // PROXY, TCP4, 61 bytes
        192, 0, 2, 1, // source 192.0.2.1
        198, 51, 100, 7, // destination 198.51.100.7
        0xc8, 0x22, // source port 51234
        0x01, 0xbb, // destination port 443
        0x20, 0x00, 0x27, // SSL, 39 bytes
        0x07, // client: SSL | CERT_CONN | CERT_SESS
        0x00, 0x00, 0x00, 0x01, // verify: 1, the certificate did not verify
        0x21, 0x00, 0x07, b'T', b'L', b'S', b'v', b'1', b'.', b'3', // SSL_VERSION
        0x22, 0x00, 0x0b, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o',
        b'm', // SSL_CN "example.com"
        0x25, 0x00, 0x07, b'R', b'S', b'A', b'2', b'0', b'4', b'8', // SSL_KEY_ALG
        0x30, 0x00, 0x04, b'b', b'l', b'u', b'e', // NETNS "blue"
    ]);
    let (header, len) = complete(&input);
    assert_eq!(len, 77);
    let tlvs: Vec<_> = header.tlvs.iter().collect();
    assert_eq!(tlvs.len(), 2);
    let ssl = tlvs[0].ssl().unwrap();
    assert_eq!(
        ssl.client,
        tlv::CLIENT_SSL | tlv::CLIENT_CERT_CONN | tlv::CLIENT_CERT_SESS
    );
    assert_eq!(ssl.verify, 1);
    let subs: Vec<_> = ssl.sub_tlvs.iter().map(|t| (t.kind, t.value)).collect();
    assert_eq!(
        subs,
        [
            (tlv::SSL_VERSION, &b"TLSv1.3"[..]),
            (tlv::SSL_CN, b"example.com"),
            (tlv::SSL_KEY_ALG, b"RSA2048"),
        ]
    );
    assert_eq!(tlvs[1].ssl(), None);
    assert_eq!(header.tlvs.find(tlv::NETNS), Some(&b"blue"[..]));
}

#[test]
fn detects_from_the_first_bytes() {
    assert_eq!(detect(b""), Detection::Incomplete);
    assert_eq!(detect(b"PRO"), Detection::Incomplete);
    assert_eq!(detect(b"PROXY"), Detection::V1);
    assert_eq!(detect(&SIG[..5]), Detection::Incomplete);
    assert_eq!(detect(&SIG), Detection::V2);
    assert_eq!(detect(b"GET / HTTP/1.1"), Detection::NotProxy);
    assert_eq!(detect(&[0x16, 0x03, 0x01]), Detection::NotProxy); // a TLS record
    assert_eq!(detect(b"PRX"), Detection::NotProxy);
    assert_eq!(detect(b"\r\n\r\n\x01"), Detection::NotProxy);
    assert_eq!(decode(b"G"), Err(DecodeError::NotProxy));
    assert_eq!(decode(b"\r\n\r\n\0\r\nQUIT\r"), Err(DecodeError::NotProxy));
}

#[test]
fn refuses_bad_version_and_command_at_the_13th_byte() {
    assert_eq!(v2_error(&with_sig(&[0x11])), V2Error::UnsupportedVersion(1));
    assert_eq!(v2_error(&with_sig(&[0x31])), V2Error::UnsupportedVersion(3));
    assert_eq!(v2_error(&with_sig(&[0x01])), V2Error::UnsupportedVersion(0));
    assert_eq!(v2_error(&with_sig(&[0x22])), V2Error::UnsupportedCommand(2));
    assert_eq!(
        v2_error(&with_sig(&[0x2f])),
        V2Error::UnsupportedCommand(0xf)
    );
}

#[test]
fn refuses_bad_family_and_transport_at_the_14th_byte() {
    assert_eq!(
        v2_error(&with_sig(&[0x21, 0x41])),
        V2Error::UnsupportedFamily(4)
    );
    assert_eq!(
        v2_error(&with_sig(&[0x20, 0xf1])),
        V2Error::UnsupportedFamily(0xf)
    );
    assert_eq!(
        v2_error(&with_sig(&[0x21, 0x13])),
        V2Error::UnsupportedTransport(3)
    );
    assert_eq!(
        v2_error(&with_sig(&[0x20, 0x0f])),
        V2Error::UnsupportedTransport(0xf)
    );
}

#[test]
fn refuses_a_header_over_the_limit_at_the_16th_byte() {
    let header = with_sig(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(
        v2_error(&header),
        V2Error::TooLong {
            len: 65551,
            max: Decoder::DEFAULT_MAX_V2_LEN
        }
    );
    let small = Decoder::with_max_v2_len(28);
    let at_limit = with_sig(&[0x21, 0x11, 0x00, 0x0c]);
    assert_eq!(small.decode(&at_limit), Ok(Decoded::Incomplete));
    let over = with_sig(&[0x21, 0x11, 0x00, 0x0d]);
    assert_eq!(
        small.decode(&over),
        Err(DecodeError::V2(V2Error::TooLong { len: 29, max: 28 }))
    );
    let all = Decoder::with_max_v2_len(V2_MAX_LEN);
    assert_eq!(all.decode(&header), Ok(Decoded::Incomplete));
}

#[test]
fn refuses_addresses_shorter_than_the_family_needs() {
    for (family, len, needed) in [(0x11, 8, 12), (0x22, 12, 36), (0x31, 108, 216)] {
        let mut input = with_sig(&[0x21, family, 0x00, len]);
        input.resize(16 + usize::from(len), 0);
        assert_eq!(
            v2_error(&input),
            V2Error::AddressesTruncated {
                needed,
                available: usize::from(len)
            }
        );
    }
}

#[test]
fn refuses_tlvs_that_cross_the_header_end() {
    let addresses = [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    // A TLV at offset 28 announcing 5 bytes with 2 left in the header.
    let mut input = with_sig(&[0x21, 0x11, 0x00, 0x11]);
    input.extend_from_slice(&addresses);
    input.extend_from_slice(&[0x01, 0x00, 0x05, b'h', b'2']);
    assert_eq!(
        v2_error(&input),
        V2Error::Tlv(TlvError::CrossesEnd { offset: 28 })
    );
    // Even when the bytes after the header would complete it.
    input.extend_from_slice(b"abc");
    assert_eq!(
        v2_error(&input),
        V2Error::Tlv(TlvError::CrossesEnd { offset: 28 })
    );
    // A lone byte after a complete TLV: a TLV header cut short.
    let mut input = with_sig(&[0x21, 0x11, 0x00, 0x10]);
    input.extend_from_slice(&addresses);
    input.extend_from_slice(&[0x04, 0x00, 0x00, 0xe0]);
    assert_eq!(
        v2_error(&input),
        V2Error::Tlv(TlvError::CrossesEnd { offset: 31 })
    );
}

#[test]
fn refuses_malformed_checksum_and_ssl_tlvs() {
    let local = |tlvs: &[u8]| {
        let mut input = with_sig(&[0x20, 0x00, 0x00, u8::try_from(tlvs.len()).unwrap()]);
        input.extend_from_slice(tlvs);
        input
    };
    assert_eq!(
        v2_error(&local(&[0x03, 0x00, 0x02, 0, 0])),
        V2Error::Tlv(TlvError::ChecksumLength { offset: 16, len: 2 })
    );
    assert_eq!(
        v2_error(&local(&[0x03, 0, 4, 0, 0, 0, 0, 0x03, 0, 4, 0, 0, 0, 0])),
        V2Error::Tlv(TlvError::DuplicateChecksum { offset: 23 })
    );
    assert_eq!(
        v2_error(&local(&[0x20, 0x00, 0x04, 1, 0, 0, 0])),
        V2Error::Tlv(TlvError::SslTooShort { offset: 16 })
    );
    assert_eq!(
        v2_error(&local(&[0x20, 0x00, 0x08, 1, 0, 0, 0, 0, 0x22, 0x00, 0x09])),
        V2Error::Tlv(TlvError::CrossesEnd { offset: 24 })
    );
}

#[test]
fn encoder_refuses_inconsistent_headers() {
    let addresses = Addresses::Ipv4 {
        source: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
        destination: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2),
    };
    let mut out = [0; 64];
    let local = V2Encoder {
        addresses,
        transport: Transport::Stream,
        ..V2Encoder::local()
    };
    assert_eq!(
        local.encode(&mut out),
        Err(V2EncodeError::LocalWithAddresses)
    );
    assert_eq!(
        V2Encoder::proxy(Transport::Unspec, addresses).encode(&mut out),
        Err(V2EncodeError::AddressesNeedTransport)
    );
    let crc: &[(u8, &[u8])] = &[(tlv::CRC32C, &[0; 4])];
    assert_eq!(
        V2Encoder::local().with_tlvs(crc).encode(&mut out),
        Err(V2EncodeError::ChecksumTlvInList)
    );
    let ssl: &[(u8, &[u8])] = &[(tlv::SSL, &[0; 4])];
    assert_eq!(
        V2Encoder::local().with_tlvs(ssl).encoded_len(),
        Err(V2EncodeError::InvalidSsl(TlvError::SslTooShort {
            offset: 0
        }))
    );
    let big = vec![0; 65_536];
    let too_big: &[(u8, &[u8])] = &[(tlv::NOOP, &big)];
    assert_eq!(
        V2Encoder::local().with_tlvs(too_big).encoded_len(),
        Err(V2EncodeError::TlvTooLong {
            kind: tlv::NOOP,
            len: 65_536
        })
    );
    let half = vec![0; 40_000];
    let too_long: &[(u8, &[u8])] = &[(tlv::NOOP, &half), (tlv::NOOP, &half)];
    assert_eq!(
        V2Encoder::local().with_tlvs(too_long).encoded_len(),
        Err(V2EncodeError::TooLong { len: 80_006 })
    );
}

#[test]
fn encoder_reports_the_size_needed_and_writes_nothing() {
    let alpn: &[(u8, &[u8])] = &[(tlv::ALPN, b"h2")];
    let encoder = V2Encoder::local().with_tlvs(alpn).with_crc32c();
    let mut out = [0xaa; 27];
    assert_eq!(
        encoder.encode(&mut out),
        Err(V2EncodeError::BufferTooSmall(BufferTooSmall {
            needed: 28,
            available: 27
        }))
    );
    assert_eq!(out, [0xaa; 27]);
}

#[test]
fn encode_ssl_builds_a_value_the_decoder_reads() {
    let mut value = [0; 32];
    let len = tlv::encode_ssl(
        tlv::CLIENT_SSL,
        0,
        &[(tlv::SSL_VERSION, b"TLSv1.2")],
        &mut value,
    )
    .unwrap();
    let tlvs: &[(u8, &[u8])] = &[(tlv::SSL, &value[..len])];
    let mut out = [0; 64];
    let written = V2Encoder::local().with_tlvs(tlvs).encode(&mut out).unwrap();
    let (header, _) = complete(&out[..written]);
    let ssl = header.tlvs.iter().next().unwrap().ssl().unwrap();
    assert_eq!(ssl.find(tlv::SSL_VERSION), Some(&b"TLSv1.2"[..]));
    assert_eq!(
        tlv::encode_ssl(0, 0, &[], &mut [0; 4]),
        Err(V2EncodeError::BufferTooSmall(BufferTooSmall {
            needed: 5,
            available: 4
        }))
    );
}

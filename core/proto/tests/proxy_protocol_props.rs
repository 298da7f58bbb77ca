//! PROXY protocol properties: encode/decode round trips for v1 and v2 (with generated
//! TLVs), and any bytes in any chunking never panic and reach the one-shot answer.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;
use veil_proto::proxy_protocol::{
    Addresses, Command, DecodeError, Decoded, Decoder, Header, Tlvs, Transport, UnixAddr,
    V1_MAX_LEN, V1Line, V2_MAX_LEN, V2_SIGNATURE, V2EncodeError, V2Encoder, V2Error, Version,
    crc32c, decode, detect, tlv,
};

/// Owned addresses, so a strategy can produce them and the test can borrow them.
#[derive(Debug, Clone)]
enum OwnedAddresses {
    Unspecified,
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
    Unix(Box<[u8; 108]>, Box<[u8; 108]>),
}

impl OwnedAddresses {
    fn view(&self) -> Addresses<'_> {
        match self {
            Self::Unspecified => Addresses::Unspecified,
            Self::V4(source, destination) => Addresses::Ipv4 {
                source: *source,
                destination: *destination,
            },
            Self::V6(source, destination) => Addresses::Ipv6 {
                source: *source,
                destination: *destination,
            },
            Self::Unix(source, destination) => Addresses::Unix {
                source: UnixAddr::new(source),
                destination: UnixAddr::new(destination),
            },
        }
    }
}

fn v4() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn v6() -> impl Strategy<Value = SocketAddrV6> {
    // Bias towards zero groups so "::" compression gets exercised.
    let group = prop_oneof![Just(0u16), any::<u16>()];
    (prop::array::uniform8(group), any::<u16>())
        .prop_map(|(groups, port)| SocketAddrV6::new(Ipv6Addr::from(groups), port, 0, 0))
}

fn unix_path() -> impl Strategy<Value = Box<[u8; 108]>> {
    prop::collection::vec(any::<u8>(), 108)
        .prop_map(|v| Box::new(<[u8; 108]>::try_from(v).expect("108 bytes")))
}

fn ip_addresses() -> impl Strategy<Value = OwnedAddresses> {
    prop_oneof![
        (v4(), v4()).prop_map(|(s, d)| OwnedAddresses::V4(s, d)),
        (v6(), v6()).prop_map(|(s, d)| OwnedAddresses::V6(s, d)),
    ]
}

fn any_addresses() -> impl Strategy<Value = OwnedAddresses> {
    prop_oneof![
        Just(OwnedAddresses::Unspecified),
        ip_addresses(),
        (unix_path(), unix_path()).prop_map(|(s, d)| OwnedAddresses::Unix(s, d)),
    ]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        Just(Transport::Unspec),
        Just(Transport::Stream),
        Just(Transport::Datagram)
    ]
}

/// A TLV list: any type but CRC32C (the encoder's flag adds it) and SSL (generated valid).
fn tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let plain = (
        any::<u8>().prop_filter("CRC32C and SSL are built apart", |k| {
            *k != tlv::CRC32C && *k != tlv::SSL
        }),
        prop::collection::vec(any::<u8>(), 0..40),
    );
    let ssl = (
        any::<u8>(),
        any::<u32>(),
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
    )
        .prop_map(|(client, verify, subs)| {
            let subs: Vec<(u8, &[u8])> = subs.iter().map(|(k, v)| (*k, &v[..])).collect();
            let mut value = vec![0; 512];
            let len =
                tlv::encode_ssl(client, verify, &subs, &mut value).expect("512 bytes suffice");
            value.truncate(len);
            (tlv::SSL, value)
        });
    prop::collection::vec(prop_oneof![3 => plain, 1 => ssl], 0..6)
}

/// A v2 header the encoder accepts: LOCAL without addresses, PROXY with addresses only
/// under a known transport.
#[derive(Debug, Clone)]
struct V2Model {
    command: Command,
    transport: Transport,
    addresses: OwnedAddresses,
    tlvs: Vec<(u8, Vec<u8>)>,
    crc32c: bool,
}

fn v2_model() -> impl Strategy<Value = V2Model> {
    let head = prop_oneof![
        transport().prop_map(|t| (Command::Local, t, OwnedAddresses::Unspecified)),
        Just((
            Command::Proxy,
            Transport::Unspec,
            OwnedAddresses::Unspecified
        )),
        (
            prop_oneof![Just(Transport::Stream), Just(Transport::Datagram)],
            any_addresses()
        )
            .prop_map(|(t, a)| (Command::Proxy, t, a)),
    ];
    (head, tlvs(), any::<bool>()).prop_map(|((command, transport, addresses), tlvs, crc32c)| {
        V2Model {
            command,
            transport,
            addresses,
            tlvs,
            crc32c,
        }
    })
}

impl V2Model {
    fn encode(&self) -> Vec<u8> {
        let tlvs: Vec<(u8, &[u8])> = self.tlvs.iter().map(|(k, v)| (*k, &v[..])).collect();
        let encoder = V2Encoder {
            command: self.command,
            transport: self.transport,
            addresses: self.addresses.view(),
            tlvs: &tlvs,
            crc32c: self.crc32c,
        };
        let len = encoder
            .encoded_len()
            .expect("the model only makes valid headers");
        let mut out = vec![0; len];
        assert_eq!(encoder.encode(&mut out), Ok(len));
        out
    }
}

fn owned_tlvs(tlvs: &Tlvs<'_>) -> Vec<(u8, Vec<u8>)> {
    tlvs.iter().map(|t| (t.kind, t.value.to_vec())).collect()
}

/// A decode result made comparable across buffers: the header's debug text and length,
/// or the error; and the bytes after the header.
type Outcome = (Result<Option<(String, usize)>, DecodeError>, Vec<u8>);

/// Feeds `input` to a growing buffer `chunks` bytes at a time, as a reader would, and
/// returns the first answer that is not `Incomplete`, with the bytes left after the header.
fn feed(decoder: Decoder, input: &[u8], chunks: &[usize]) -> Outcome {
    let mut buf = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        let size = sizes.next().unwrap_or(1).clamp(1, rest.len().max(1));
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        buf.extend_from_slice(chunk);
        rest = tail;
        match decoder.decode(&buf) {
            Ok(Decoded::Incomplete) if !rest.is_empty() => {}
            Ok(Decoded::Incomplete) => return (Ok(None), Vec::new()),
            Ok(Decoded::Complete { header, len }) => {
                let after = [&buf[len..], rest].concat();
                return (Ok(Some((format!("{header:?}"), len))), after);
            }
            Err(e) => return (Err(e), Vec::new()),
        }
    }
}

/// The one-shot answer in the same shape as [`feed`].
fn one_shot(decoder: Decoder, input: &[u8]) -> Outcome {
    match decoder.decode(input) {
        Ok(Decoded::Incomplete) => (Ok(None), Vec::new()),
        Ok(Decoded::Complete { header, len }) => (
            Ok(Some((format!("{header:?}"), len))),
            input[len..].to_vec(),
        ),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// Every prefix answers `Incomplete` or exactly what the whole input answers.
fn assert_prefixes_agree(decoder: Decoder, input: &[u8]) -> Result<(), TestCaseError> {
    let whole = decoder.decode(input);
    for end in 0..=input.len() {
        let prefix = decoder.decode(&input[..end]);
        if prefix != Ok(Decoded::Incomplete) {
            prop_assert_eq!(&prefix, &whole, "prefix of {} bytes", end);
            if let Ok(Decoded::Complete { len, .. }) = prefix {
                prop_assert!(len <= end);
            }
        }
    }
    Ok(())
}

/// Bytes worth throwing at the decoder: random bytes, v1-ish text, v2-ish binary, and
/// valid headers as they are, with a few bytes changed, or cut short, all followed by data.
fn hostile_input() -> BoxedStrategy<Vec<u8>> {
    let tail = || prop::collection::vec(any::<u8>(), 0..8);
    let v1_text = (
        prop::sample::select(&["PROXY ", "PROXY TCP4 ", "PROXY TCP6 ", "PROXY UNKNOWN "][..]),
        prop::collection::vec(
            prop::sample::select(&b"0123456789abcdefABCDEF.: TCPUNKOWX46\r\t"[..]),
            0..110,
        ),
        any::<bool>(),
        tail(),
    )
        .prop_map(|(lead, text, crlf, tail)| {
            let crlf: &[u8] = if crlf { b"\r\n" } else { b"" };
            [lead.as_bytes(), &text, crlf, &tail].concat()
        });
    let v2_binary = (
        prop::sample::select(&[0x20u8, 0x21][..]),
        prop::sample::select(&[0x00u8, 0x01, 0x10, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32][..]),
        0..300u16,
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(command, family, len, body)| {
            [
                &V2_SIGNATURE[..],
                &[command, family],
                &len.to_be_bytes(),
                &body,
            ]
            .concat()
        });
    let v1_line = ip_addresses().prop_map(|a| V1Line::new(&a.view()).to_string().into_bytes());
    let valid = prop_oneof![v1_line.boxed(), v2_model().prop_map(|m| m.encode()).boxed()].boxed();
    let changed = (
        valid.clone(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
    )
        .prop_map(|(mut bytes, changes)| {
            for (at, value) in changes {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes
        });
    let cut = (valid.clone(), any::<prop::sample::Index>()).prop_map(|(mut bytes, at)| {
        bytes.truncate(at.index(bytes.len()));
        bytes
    });
    let followed = |strategy: BoxedStrategy<Vec<u8>>| {
        (strategy, tail()).prop_map(|(bytes, tail)| [bytes, tail].concat())
    };
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        2 => v1_text,
        2 => v2_binary,
        2 => followed(valid),
        2 => followed(changed.boxed()),
        1 => cut,
    ]
    .boxed()
}

proptest! {
    #[test]
    fn v1_round_trips(addresses in prop_oneof![Just(OwnedAddresses::Unspecified), ip_addresses()],
                      data in prop::collection::vec(any::<u8>(), 0..16)) {
        let view = addresses.view();
        let line = V1Line::new(&view);
        let mut out = [0; V1_MAX_LEN];
        let len = line.encode(&mut out).unwrap();
        prop_assert_eq!(len, line.encoded_len());
        prop_assert!(len <= V1_MAX_LEN);
        let text = line.to_string();
        prop_assert_eq!(text.as_bytes(), &out[..len]);
        let input = [&out[..len], &data].concat();
        let Ok(Decoded::Complete { header, len: decoded_len }) = decode(&input) else {
            return Err(TestCaseError::fail(format!("{:?}", decode(&input))));
        };
        prop_assert_eq!(decoded_len, len);
        prop_assert_eq!(&input[decoded_len..], &data[..]);
        let transport = if view == Addresses::Unspecified { Transport::Unspec } else { Transport::Stream };
        prop_assert_eq!(header, Header {
            version: Version::V1,
            command: Command::Proxy,
            transport,
            addresses: view,
            tlvs: Tlvs::EMPTY,
        });
    }

    #[test]
    fn v2_round_trips(model in v2_model(), data in prop::collection::vec(any::<u8>(), 0..16)) {
        let encoded = model.encode();
        let input = [&encoded[..], &data].concat();
        let decoder = Decoder::with_max_v2_len(V2_MAX_LEN);
        let Ok(Decoded::Complete { header, len }) = decoder.decode(&input) else {
            return Err(TestCaseError::fail(format!("{:?}", decoder.decode(&input))));
        };
        prop_assert_eq!(len, encoded.len());
        prop_assert_eq!(&input[len..], &data[..]);
        prop_assert_eq!(header.version, Version::V2);
        prop_assert_eq!(header.command, model.command);
        prop_assert_eq!(header.transport, model.transport);
        prop_assert_eq!(header.addresses, model.addresses.view());
        let mut tlvs = owned_tlvs(&header.tlvs);
        if model.crc32c {
            let (kind, value) = tlvs.pop().unwrap();
            prop_assert_eq!(kind, tlv::CRC32C);
            prop_assert_eq!(value.len(), 4);
        }
        prop_assert_eq!(tlvs, model.tlvs);
    }

    #[test]
    fn a_changed_address_or_checksum_byte_fails_the_checksum(
        addresses in any_addresses().prop_filter("needs addresses", |a| !matches!(a, OwnedAddresses::Unspecified)),
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let model = V2Model { command: Command::Proxy, transport: Transport::Stream, addresses, tlvs: Vec::new(), crc32c: true };
        let mut input = model.encode();
        // The address block sits between the fixed 16 bytes and the 7-byte CRC32C TLV;
        // its last 4 bytes are the checksum value.
        let changeable: Vec<usize> = (16..input.len() - 7).chain(input.len() - 4..input.len()).collect();
        input[changeable[at.index(changeable.len())]] ^= xor;
        let received = u32::from_be_bytes(input[input.len() - 4..].try_into().unwrap());
        let mut zeroed = input.clone();
        let end = zeroed.len();
        zeroed[end - 4..].fill(0);
        prop_assert_eq!(
            decode(&input),
            Err(DecodeError::V2(V2Error::ChecksumMismatch { received, computed: crc32c(&zeroed) }))
        );
    }

    #[test]
    fn hostile_bytes_never_panic_and_prefixes_agree(input in hostile_input()) {
        let _ = detect(&input);
        let _ = Tlvs::parse(&input);
        let _ = tlv::Ssl::parse(&input);
        for decoder in [Decoder::new(), Decoder::with_max_v2_len(64)] {
            assert_prefixes_agree(decoder, &input)?;
        }
    }

    #[test]
    fn chunked_feeding_matches_one_shot(
        input in hostile_input(),
        chunks in prop::collection::vec(1..20usize, 1..8),
    ) {
        let decoder = Decoder::new();
        prop_assert_eq!(feed(decoder, &input, &chunks), one_shot(decoder, &input));
        prop_assert_eq!(feed(decoder, &input, &[1]), one_shot(decoder, &input));
    }

    #[test]
    fn encoders_never_panic_on_short_buffers(model in v2_model(), room in 0..300usize) {
        let tlvs: Vec<(u8, &[u8])> = model.tlvs.iter().map(|(k, v)| (*k, &v[..])).collect();
        let encoder = V2Encoder {
            command: model.command,
            transport: model.transport,
            addresses: model.addresses.view(),
            tlvs: &tlvs,
            crc32c: model.crc32c,
        };
        let needed = encoder.encoded_len().unwrap();
        let mut out = vec![0; room];
        match encoder.encode(&mut out) {
            Ok(len) => prop_assert!(len == needed && room >= needed),
            Err(V2EncodeError::BufferTooSmall(e)) => {
                prop_assert!(room < needed);
                prop_assert_eq!((e.needed, e.available), (needed, room));
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
        }
    }
}

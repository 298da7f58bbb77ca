//! `veil_proto::proxy_protocol`: arbitrary headers (v1 lines; v2 blocks with any command,
//! transport and addresses, arbitrary TLVs, a well-formed SSL TLV and an optional CRC32C)
//! encode into bytes that decode back to them, every proper prefix of which is
//! `Incomplete`. The v2 encoder refuses exactly what the spec forbids to send.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::proxy_protocol::{
    Addresses, Command, Decoded, Decoder, Transport, UnixAddr, V1Line, V2_MAX_LEN, V2EncodeError,
    V2Encoder, Version, tlv,
};

#[derive(Debug, Arbitrary)]
enum AddressesInput {
    Unspecified,
    V4([u8; 4], [u8; 4], u16, u16),
    V6([u8; 16], [u8; 16], u16, u16),
    /// Paths, cut or padded with NULs to 108 bytes.
    Unix(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct TlvInput {
    kind: u8,
    value: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct SslInput {
    client: u8,
    verify: u32,
    sub_tlvs: Vec<TlvInput>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    v1: bool,
    local: bool,
    transport: u8,
    addresses: AddressesInput,
    tlvs: Vec<TlvInput>,
    ssl: Option<SslInput>,
    crc32c: bool,
}

fn unix_raw(path: &[u8]) -> [u8; UnixAddr::LEN] {
    let mut raw = [0; UnixAddr::LEN];
    let len = path.len().min(UnixAddr::LEN);
    raw[..len].copy_from_slice(&path[..len]);
    raw
}

/// Encodes an arbitrary header and decodes it back.
///
/// # Panics
///
/// When a header does not come back exactly or the encoder misjudges one.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let unix = match &input.addresses {
        AddressesInput::Unix(source, destination) => (unix_raw(source), unix_raw(destination)),
        _ => ([0; UnixAddr::LEN], [0; UnixAddr::LEN]),
    };
    let addresses = match &input.addresses {
        AddressesInput::Unspecified => Addresses::Unspecified,
        AddressesInput::V4(s, d, sp, dp) => Addresses::Ipv4 {
            source: SocketAddrV4::new(Ipv4Addr::from(*s), *sp),
            destination: SocketAddrV4::new(Ipv4Addr::from(*d), *dp),
        },
        AddressesInput::V6(s, d, sp, dp) => Addresses::Ipv6 {
            source: SocketAddrV6::new(Ipv6Addr::from(*s), *sp, 0, 0),
            destination: SocketAddrV6::new(Ipv6Addr::from(*d), *dp, 0, 0),
        },
        AddressesInput::Unix(..) => Addresses::Unix {
            source: UnixAddr::new(&unix.0),
            destination: UnixAddr::new(&unix.1),
        },
    };
    if input.v1 {
        v1(addresses);
    } else {
        v2(&input, addresses);
    }
}

/// Decodes `bytes`, all of whose proper prefixes must be incomplete.
fn decode_exactly(bytes: &[u8]) -> veil_proto::proxy_protocol::Header<'_> {
    let decoder = Decoder::with_max_v2_len(V2_MAX_LEN);
    for end in 0..bytes.len() {
        assert_eq!(
            decoder.decode(&bytes[..end]),
            Ok(Decoded::Incomplete),
            "at {end}"
        );
    }
    match decoder.decode(bytes) {
        Ok(Decoded::Complete { header, len }) => {
            assert_eq!(len, bytes.len());
            header
        }
        other => panic!("{:?} decodes as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn v1(addresses: Addresses<'_>) {
    let line = V1Line::new(&addresses);
    let mut out = vec![0; line.encoded_len()];
    assert_eq!(line.encode(&mut out), Ok(out.len()));
    assert_eq!(line.to_string().as_bytes(), out);
    let header = decode_exactly(&out);
    assert_eq!(header.version, Version::V1);
    assert_eq!(header.command, Command::Proxy);
    assert!(header.tlvs.is_empty());
    match addresses {
        Addresses::Ipv4 { .. } | Addresses::Ipv6 { .. } => {
            assert_eq!(header.transport, Transport::Stream);
            assert_eq!(header.addresses, addresses);
        }
        // v1 cannot carry UNIX addresses: they go as UNKNOWN.
        Addresses::Unspecified | Addresses::Unix { .. } => {
            assert_eq!(header.transport, Transport::Unspec);
            assert_eq!(header.addresses, Addresses::Unspecified);
        }
    }
}

fn v2(input: &Input, addresses: Addresses<'_>) {
    let mut ssl = Vec::new();
    if let Some(s) = &input.ssl {
        let subs: Vec<(u8, &[u8])> = s
            .sub_tlvs
            .iter()
            .map(|t| (t.kind, t.value.as_slice()))
            .collect();
        ssl = vec![0; 5 + subs.iter().map(|(_, v)| 3 + v.len()).sum::<usize>()];
        let len = tlv::encode_ssl(s.client, s.verify, &subs, &mut ssl).expect("sized above");
        assert_eq!(len, ssl.len());
    }
    let mut tlvs: Vec<(u8, &[u8])> = input
        .tlvs
        .iter()
        .filter(|t| t.kind != tlv::CRC32C && t.kind != tlv::SSL)
        .map(|t| (t.kind, t.value.as_slice()))
        .collect();
    if input.ssl.is_some() {
        tlvs.push((tlv::SSL, &ssl));
    }
    let command = if input.local {
        Command::Local
    } else {
        Command::Proxy
    };
    let transport = match input.transport % 3 {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        _ => Transport::Datagram,
    };
    let encoder = V2Encoder {
        command,
        transport,
        addresses,
        tlvs: &tlvs,
        crc32c: input.crc32c,
    };
    let has_addresses = addresses != Addresses::Unspecified;
    let len = match encoder.encoded_len() {
        Ok(len) => len,
        Err(V2EncodeError::LocalWithAddresses) => {
            assert!(input.local && has_addresses);
            return;
        }
        Err(V2EncodeError::AddressesNeedTransport) => {
            assert!(has_addresses && transport == Transport::Unspec);
            return;
        }
        Err(V2EncodeError::TooLong { len }) => {
            assert!(len > usize::from(u16::MAX));
            return;
        }
        Err(e) => panic!("refused {encoder:?}: {e:?}"),
    };
    let mut out = vec![0; len];
    assert_eq!(encoder.encode(&mut out), Ok(len));
    assert!(encoder.encode(&mut out[..len - 1]).is_err());
    let header = decode_exactly(&out);
    assert_eq!(header.version, Version::V2);
    assert_eq!(header.command, command);
    assert_eq!(header.transport, transport);
    assert_eq!(header.addresses, addresses);
    let mut decoded: Vec<(u8, &[u8])> = header.tlvs.iter().map(|t| (t.kind, t.value)).collect();
    if input.crc32c {
        let (kind, value) = decoded.pop().expect("the checksum comes last");
        assert_eq!(kind, tlv::CRC32C);
        assert_eq!(value.len(), 4);
    }
    assert_eq!(decoded, tlvs);
    if let Some(s) = &input.ssl {
        let parsed = header
            .tlvs
            .iter()
            .find_map(|t| t.ssl())
            .expect("an SSL TLV");
        assert_eq!((parsed.client, parsed.verify), (s.client, s.verify));
        assert!(
            parsed
                .sub_tlvs
                .iter()
                .map(|t| (t.kind, t.value.to_vec()))
                .eq(s.sub_tlvs.iter().map(|t| (t.kind, t.value.clone())))
        );
    }
}

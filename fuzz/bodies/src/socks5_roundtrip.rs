//! `veil_proto::socks5`: arbitrary targets go through the UDP request header and through
//! replies unchanged; an arbitrary well-formed client session (greeting, credentials,
//! request, pipelined data), cut into arbitrary chunks, draws exactly the transcript
//! RFC 1928 and RFC 1929 prescribe.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::socks5::{
    Command, Config, Domain, MAX_UDP_HEADER_LEN, Refusal, Reply, ReplyCode, Request, Target,
    decode_udp, encode_reply, encode_udp_header, prepend_udp_header, udp_header_len,
};

use crate::chunks::split;
use crate::socks5::{Step, handshake};

const REPLY_CODES: [ReplyCode; 9] = [
    ReplyCode::Succeeded,
    ReplyCode::GeneralFailure,
    ReplyCode::ConnectionNotAllowed,
    ReplyCode::NetworkUnreachable,
    ReplyCode::HostUnreachable,
    ReplyCode::ConnectionRefused,
    ReplyCode::TtlExpired,
    ReplyCode::CommandNotSupported,
    ReplyCode::AddressTypeNotSupported,
];

#[derive(Debug, Arbitrary)]
enum TargetInput {
    V4([u8; 4], u16),
    /// Flow info and scope id, which the wire does not carry.
    V6([u8; 16], u16, u32, u32),
    /// Bytes mapped onto visible ASCII.
    Domain(Vec<u8>, u16),
}

impl TargetInput {
    /// The target, and the value it decodes as (flow info and scope id zeroed).
    fn target(&self) -> Option<(Target, Target)> {
        Some(match self {
            Self::V4(octets, port) => {
                let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(*octets), *port));
                (Target::Ip(addr), Target::Ip(addr))
            }
            Self::V6(octets, port, flow, scope) => {
                let ip = Ipv6Addr::from(*octets);
                (
                    Target::Ip(SocketAddr::V6(SocketAddrV6::new(ip, *port, *flow, *scope))),
                    Target::Ip(SocketAddr::V6(SocketAddrV6::new(ip, *port, 0, 0))),
                )
            }
            Self::Domain(bytes, port) => {
                let text: String = bytes
                    .iter()
                    .take(255)
                    .map(|&b| char::from(0x21 + b % 94))
                    .collect();
                let domain = Domain::new(&text).ok()?;
                assert_eq!(domain.as_str(), text);
                (
                    Target::Domain(domain.clone(), *port),
                    Target::Domain(domain, *port),
                )
            }
        })
    }
}

/// The server's [`Config`].
#[derive(Debug, Arbitrary)]
struct Methods {
    no_auth: bool,
    username_password: bool,
}

#[derive(Debug, Arbitrary)]
struct Session {
    server: Methods,
    methods: Vec<u8>,
    username: Vec<u8>,
    password: Vec<u8>,
    accept: bool,
    udp_associate: bool,
    chunk_sizes: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    target: TargetInput,
    reply_code: u8,
    headroom: u8,
    payload: Vec<u8>,
    session: Session,
}

/// Runs the header, reply and session round trips on one arbitrary input.
///
/// # Panics
///
/// When a target or a transcript does not come out as expected.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Some((target, decoded)) = input.target.target() else {
        return;
    };
    udp_header(
        &target,
        &decoded,
        &input.payload,
        usize::from(input.headroom),
    );
    reply(&target, &decoded, input.reply_code);
    session(&input.session, &target, &decoded, &input.payload);
}

fn udp_header(target: &Target, decoded: &Target, payload: &[u8], headroom: usize) {
    let header_len = udp_header_len(target);
    assert!(header_len <= MAX_UDP_HEADER_LEN);
    let mut datagram = vec![0; header_len];
    assert_eq!(encode_udp_header(target, &mut datagram), Ok(header_len));
    datagram.extend_from_slice(payload);
    let parsed = decode_udp(&datagram).expect("an encoded header");
    assert_eq!(&parsed.target, decoded);
    assert_eq!(parsed.payload, payload);

    let mut buf = vec![0xee; headroom];
    buf.extend_from_slice(payload);
    match prepend_udp_header(target, &mut buf, headroom) {
        Ok(start) => {
            assert_eq!(start, headroom - header_len);
            assert_eq!(buf[start..], datagram);
        }
        Err(e) => {
            assert!(headroom < header_len);
            assert_eq!(e.needed, header_len);
        }
    }
}

/// A reply's address group is a UDP header's, after `VER REP RSV`.
fn reply(target: &Target, decoded: &Target, code: u8) {
    let reply = Reply {
        code: REPLY_CODES[usize::from(code) % REPLY_CODES.len()],
        bound: target.clone(),
    };
    let mut out = vec![0; reply.encoded_len()];
    assert_eq!(encode_reply(&reply, &mut out), Ok(out.len()));
    assert_eq!(out[..3], [5, reply.code.code(), 0]);
    let mut as_udp = vec![0, 0, 0];
    as_udp.extend_from_slice(&out[3..]);
    let parsed = decode_udp(&as_udp).expect("a reply's address group");
    assert_eq!(&parsed.target, decoded);
    assert!(parsed.payload.is_empty());
}

fn session(session: &Session, target: &Target, decoded: &Target, payload: &[u8]) {
    let config = Config {
        no_auth: session.server.no_auth,
        username_password: session.server.username_password,
    };
    let methods = &session.methods[..session.methods.len().min(255)];
    let username = &session.username[..session.username.len().min(255)];
    let password = &session.password[..session.password.len().min(255)];
    let mut stream = vec![5, len_u8(methods)];
    stream.extend_from_slice(methods);
    let mut expected = Vec::new();
    let chosen = if config.username_password && methods.contains(&2) {
        2
    } else if config.no_auth && methods.contains(&0) {
        0
    } else {
        expected.push(Step::Close(vec![5, 0xff], Refusal::NoAcceptableMethod));
        0xff
    };
    if chosen != 0xff {
        expected.push(Step::Send(vec![5, chosen]));
    }
    if chosen == 2 {
        stream.push(1);
        stream.push(len_u8(username));
        stream.extend_from_slice(username);
        stream.push(len_u8(password));
        stream.extend_from_slice(password);
        expected.push(Step::Authenticate {
            username: username.to_vec(),
            password: password.to_vec(),
            reply: vec![1, u8::from(!session.accept)],
        });
    }
    let command = if session.udp_associate {
        Command::UdpAssociate
    } else {
        Command::Connect
    };
    stream.extend_from_slice(&[5, command.code(), 0]);
    let mut header = vec![0; udp_header_len(target)];
    encode_udp_header(target, &mut header).expect("sized by udp_header_len");
    stream.extend_from_slice(&header[3..]);
    if chosen != 0xff && (chosen == 0 || session.accept) {
        expected.push(Step::Request(
            Request {
                command,
                target: decoded.clone(),
            },
            stream.len(),
        ));
    }
    stream.extend_from_slice(payload);

    let chunks = split(&stream, &session.chunk_sizes);
    assert_eq!(
        handshake(config, session.accept, &chunks),
        expected,
        "{chunks:02x?}"
    );
}

fn len_u8(bytes: &[u8]) -> u8 {
    u8::try_from(bytes.len()).expect("cut to 255")
}

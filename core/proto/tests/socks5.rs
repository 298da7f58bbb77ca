//! SOCKS5 server: byte fixtures for every message, whole flows, chunking equivalence,
//! robustness against arbitrary bytes, and UDP header and reply round trips.
#![allow(missing_docs)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;
use veil_proto::BufferTooSmall;
use veil_proto::socks5::{
    Action, Command, Config, Domain, DomainError, MAX_REPLY_LEN, MAX_UDP_HEADER_LEN,
    NotAwaitingAuth, Refusal, Reply, ReplyCode, Request, Server, Socks5Error, Target, UdpError,
    decode_udp, encode_reply, encode_udp_header, prepend_udp_header, udp_header_len,
};

// ---------------------------------------------------------------------------------------
// Fixtures, client to server
// ---------------------------------------------------------------------------------------

/// VER=5, NMETHODS=1, METHODS={X'00' no auth}.
const GREETING_NO_AUTH: &[u8] = &[0x05, 0x01, 0x00];
/// VER=5, NMETHODS=1, METHODS={X'02' username/password}.
const GREETING_PASSWORD: &[u8] = &[0x05, 0x01, 0x02];
/// VER=5, NMETHODS=2, METHODS={X'00', X'02'}.
const GREETING_BOTH: &[u8] = &[0x05, 0x02, 0x00, 0x02];
/// VER=5, NMETHODS=1, METHODS={X'01' GSSAPI}.
const GREETING_GSSAPI: &[u8] = &[0x05, 0x01, 0x01];
/// VER=5, NMETHODS=0, no METHODS.
const GREETING_EMPTY: &[u8] = &[0x05, 0x00];

/// VER=1, ULEN=5, "alice", PLEN=6, "secret".
const AUTH_ALICE: &[u8] = &[
    0x01, 0x05, b'a', b'l', b'i', b'c', b'e', 0x06, b's', b'e', b'c', b'r', b'e', b't',
];
/// VER=1, ULEN=0, PLEN=0.
const AUTH_EMPTY: &[u8] = &[0x01, 0x00, 0x00];

/// VER=5, CMD=CONNECT, RSV=0, ATYP=IPv4, 192.0.2.1, port 80.
const CONNECT_V4: &[u8] = &[0x05, 0x01, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x50];
/// VER=5, CMD=CONNECT, RSV=0, ATYP=IPv6, `2001:db8::1`, port 443.
const CONNECT_V6: &[u8] = &[
    0x05, 0x01, 0x00, 0x04, // VER CMD RSV ATYP
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
    0x01, 0xbb, // port 443
];
/// VER=5, CMD=CONNECT, RSV=0, ATYP=DOMAINNAME, length 11, "example.com", port 80.
const CONNECT_DOMAIN: &[u8] = &[
    0x05, 0x01, 0x00, 0x03, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
    0x00, 0x50,
];
/// VER=5, CMD=UDP ASSOCIATE, RSV=0, ATYP=IPv4, 0.0.0.0, port 0 (client address unknown).
const UDP_ASSOCIATE_ANY: &[u8] = &[0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00];
/// VER=5, CMD=BIND, RSV=0, ATYP=IPv4, 192.0.2.1, port 21.
const BIND_V4: &[u8] = &[0x05, 0x02, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x15];
/// VER=5, CMD=X'09' (unassigned), RSV=0, ATYP=IPv4, 192.0.2.1, port 80.
const UNKNOWN_CMD_V4: &[u8] = &[0x05, 0x09, 0x00, 0x01, 192, 0, 2, 1, 0x00, 0x50];
/// VER=5, CMD=CONNECT, RSV=0, ATYP=X'05' (unassigned), then bytes of unknown meaning.
const CONNECT_UNKNOWN_ATYP: &[u8] = &[0x05, 0x01, 0x00, 0x05, 0xde, 0xad];
/// VER=5, CMD=CONNECT, RSV=0, ATYP=DOMAINNAME, length 0, port 80.
const CONNECT_EMPTY_DOMAIN: &[u8] = &[0x05, 0x01, 0x00, 0x03, 0, 0x00, 0x50];
/// VER=5, CMD=CONNECT, RSV=0, ATYP=DOMAINNAME, length 3, "a b", port 80.
const CONNECT_SPACE_DOMAIN: &[u8] = &[0x05, 0x01, 0x00, 0x03, 3, b'a', b' ', b'b', 0x00, 0x50];
/// VER=5, CMD=CONNECT, RSV=X'FF' (not zero), ATYP=IPv4, 192.0.2.1, port 80.
const CONNECT_V4_RSV_SET: &[u8] = &[0x05, 0x01, 0xff, 0x01, 192, 0, 2, 1, 0x00, 0x50];

// ---------------------------------------------------------------------------------------
// Fixtures, server to client
// ---------------------------------------------------------------------------------------

/// VER=5, METHOD=X'00'.
const SELECT_NO_AUTH: &[u8] = &[0x05, 0x00];
/// VER=5, METHOD=X'02'.
const SELECT_PASSWORD: &[u8] = &[0x05, 0x02];
/// VER=5, METHOD=X'FF' no acceptable methods.
const SELECT_NONE: &[u8] = &[0x05, 0xff];
/// VER=1, STATUS=0 success.
const AUTH_OK: &[u8] = &[0x01, 0x00];
/// VER=1, STATUS=1 failure.
const AUTH_FAILED: &[u8] = &[0x01, 0x01];
/// VER=5, REP=X'07' command not supported, RSV=0, ATYP=IPv4, 0.0.0.0, port 0.
const REPLY_COMMAND_NOT_SUPPORTED: &[u8] = &[0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
/// VER=5, REP=X'08' address type not supported, RSV=0, ATYP=IPv4, 0.0.0.0, port 0.
const REPLY_ATYP_NOT_SUPPORTED: &[u8] = &[0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
/// VER=5, REP=X'04' host unreachable, RSV=0, ATYP=IPv4, 0.0.0.0, port 0.
const REPLY_HOST_UNREACHABLE: &[u8] = &[0x05, 0x04, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
/// VER=5, REP=X'00', RSV=0, ATYP=IPv4, 198.51.100.7, port 40000.
const REPLY_SUCCESS_V4: &[u8] = &[0x05, 0x00, 0x00, 0x01, 198, 51, 100, 7, 0x9c, 0x40];
/// VER=5, REP=X'00', RSV=0, ATYP=IPv6, `2001:db8::7`, port 1080.
const REPLY_SUCCESS_V6: &[u8] = &[
    0x05, 0x00, 0x00, 0x04, // VER REP RSV ATYP
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, // 2001:db8::7
    0x04, 0x38, // port 1080
];

/// RSV=0, FRAG=0, ATYP=IPv4, 192.0.2.53, port 53, then a 3-byte payload.
const UDP_V4: &[u8] = &[
    0x00, 0x00, 0x00, 0x01, 192, 0, 2, 53, 0x00, 0x35, 0xaa, 0xbb, 0xcc,
];
/// RSV=0, FRAG=0, ATYP=DOMAINNAME, length 4, "a.io", port 443, then payload "hi".
const UDP_DOMAIN: &[u8] = &[
    0x00, 0x00, 0x00, 0x03, 4, b'a', b'.', b'i', b'o', 0x01, 0xbb, b'h', b'i',
];
/// RSV=0, FRAG=1 (first fragment of a sequence), ATYP=IPv4, 192.0.2.53, port 53.
const UDP_FRAGMENT: &[u8] = &[0x00, 0x00, 0x01, 0x01, 192, 0, 2, 53, 0x00, 0x35, 0xaa];

// ---------------------------------------------------------------------------------------
// A caller that records what the server asked of it
// ---------------------------------------------------------------------------------------

/// One thing the server asked the caller to do, with owned copies of what it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Send(Vec<u8>),
    Close(Vec<u8>, Refusal),
    Authenticate {
        username: Vec<u8>,
        password: Vec<u8>,
        reply: Vec<u8>,
    },
    Request(Request),
    Error(Socks5Error),
}

/// Everything that happened to one session, and the client bytes left for the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    events: Vec<Event>,
    /// Bytes after the handshake (only meaningful when it ended with a request or a
    /// refusal; empty after an error).
    leftover: Vec<u8>,
}

/// Feeds `chunks` as a caller would, answering credentials with `verdict`.
fn run<'c>(
    config: Config,
    chunks: impl IntoIterator<Item = &'c [u8]>,
    verdict: impl Fn(&[u8], &[u8]) -> bool,
) -> Transcript {
    let mut server = Server::new(config);
    let mut chunks = chunks.into_iter();
    let mut pending = Vec::new();
    let mut events = Vec::new();
    'chunks: while let Some(chunk) = chunks.next() {
        pending.extend_from_slice(chunk);
        loop {
            let fed = pending.len();
            let (consumed, action) = match server.feed(&pending) {
                Ok(step) => step,
                Err(e) => {
                    events.push(Event::Error(e));
                    return Transcript {
                        events,
                        leftover: Vec::new(),
                    };
                }
            };
            assert!(consumed <= fed, "consumed {consumed} of {fed}");
            let Some(action) = action else {
                assert_eq!(consumed, fed, "no action, yet bytes left unconsumed");
                pending.clear();
                continue 'chunks;
            };
            let mut rest = pending.split_off(consumed);
            let ended = match action {
                Action::Send(bytes) => {
                    events.push(Event::Send(bytes.to_vec()));
                    false
                }
                Action::Close { reply, reason } => {
                    events.push(Event::Close(reply.to_vec(), reason));
                    true
                }
                Action::Authenticate(credentials) => {
                    let username = credentials.username().to_vec();
                    let password = credentials.password().to_vec();
                    let accepted = verdict(&username, &password);
                    let reply = server
                        .accept_auth(accepted)
                        .expect("credentials pending")
                        .to_vec();
                    events.push(Event::Authenticate {
                        username,
                        password,
                        reply,
                    });
                    !accepted
                }
                Action::Request(request) => {
                    events.push(Event::Request(request));
                    true
                }
            };
            if ended {
                rest.extend(chunks.flatten());
                return Transcript {
                    events,
                    leftover: rest,
                };
            }
            pending = rest;
        }
    }
    Transcript {
        events,
        leftover: pending,
    }
}

fn one_shot(config: Config, bytes: &[u8]) -> Transcript {
    run(config, [bytes], |user, pass| {
        user == b"alice" && pass == b"secret"
    })
}

fn byte_by_byte(config: Config, bytes: &[u8]) -> Transcript {
    run(config, bytes.chunks(1), |user, pass| {
        user == b"alice" && pass == b"secret"
    })
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ip(addr: &str) -> Target {
    Target::Ip(addr.parse().expect("socket address literal"))
}

fn connect(target: Target) -> Event {
    Event::Request(Request {
        command: Command::Connect,
        target,
    })
}

fn send(bytes: &[u8]) -> Event {
    Event::Send(bytes.to_vec())
}

fn close(bytes: &[u8], reason: Refusal) -> Event {
    Event::Close(bytes.to_vec(), reason)
}

fn alice_accepted() -> Event {
    Event::Authenticate {
        username: b"alice".to_vec(),
        password: b"secret".to_vec(),
        reply: AUTH_OK.to_vec(),
    }
}

/// Runs `bytes` one-shot and byte by byte, checks both agree, and returns the transcript.
fn session(config: Config, bytes: &[u8]) -> Transcript {
    let whole = one_shot(config, bytes);
    assert_eq!(byte_by_byte(config, bytes), whole, "byte-by-byte differs");
    whole
}

// ---------------------------------------------------------------------------------------
// Full flows
// ---------------------------------------------------------------------------------------

#[test]
fn no_auth_connect_ipv4() {
    let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, CONNECT_V4]));
    assert_eq!(
        t.events,
        [send(SELECT_NO_AUTH), connect(ip("192.0.2.1:80"))]
    );
    assert!(t.leftover.is_empty());
}

#[test]
fn no_auth_connect_ipv6() {
    let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, CONNECT_V6]));
    assert_eq!(
        t.events,
        [send(SELECT_NO_AUTH), connect(ip("[2001:db8::1]:443"))]
    );
}

#[test]
fn no_auth_connect_domain() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, CONNECT_DOMAIN]),
    );
    let target = Target::Domain(Domain::new("example.com").unwrap(), 80);
    assert_eq!(t.events, [send(SELECT_NO_AUTH), connect(target)]);
}

#[test]
fn no_auth_udp_associate() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, UDP_ASSOCIATE_ANY]),
    );
    let request = Request {
        command: Command::UdpAssociate,
        target: Target::UNSPECIFIED,
    };
    assert_eq!(t.events, [send(SELECT_NO_AUTH), Event::Request(request)]);
}

#[test]
fn password_success_then_connect() {
    let bytes = concat(&[GREETING_PASSWORD, AUTH_ALICE, CONNECT_DOMAIN]);
    let t = session(Config::USERNAME_PASSWORD, &bytes);
    let target = Target::Domain(Domain::new("example.com").unwrap(), 80);
    assert_eq!(
        t.events,
        [send(SELECT_PASSWORD), alice_accepted(), connect(target)]
    );
}

#[test]
fn password_failure_ends_the_session() {
    let wrong = [0x01, 0x05, b'a', b'l', b'i', b'c', b'e', 0x01, b'x'];
    let t = session(
        Config::USERNAME_PASSWORD,
        &concat(&[GREETING_PASSWORD, &wrong, CONNECT_V4]),
    );
    assert_eq!(
        t.events,
        [
            send(SELECT_PASSWORD),
            Event::Authenticate {
                username: b"alice".to_vec(),
                password: b"x".to_vec(),
                reply: AUTH_FAILED.to_vec(),
            }
        ]
    );
    // What the client sent after its credentials is not read.
    assert_eq!(t.leftover, CONNECT_V4);
}

#[test]
fn feed_after_rejected_credentials_is_finished() {
    let mut server = Server::new(Config::USERNAME_PASSWORD);
    server.feed(GREETING_PASSWORD).unwrap();
    server.feed(AUTH_ALICE).unwrap();
    assert_eq!(server.accept_auth(false), Ok(AUTH_FAILED));
    assert_eq!(server.feed(CONNECT_V4), Err(Socks5Error::Finished));
    assert_eq!(server.accept_auth(true), Err(NotAwaitingAuth));
}

#[test]
fn empty_username_and_password_reach_the_caller() {
    let t = session(
        Config::USERNAME_PASSWORD,
        &concat(&[GREETING_PASSWORD, AUTH_EMPTY]),
    );
    assert_eq!(
        t.events,
        [
            send(SELECT_PASSWORD),
            Event::Authenticate {
                username: Vec::new(),
                password: Vec::new(),
                reply: AUTH_FAILED.to_vec(),
            }
        ]
    );
}

#[test]
fn longest_credentials_fit() {
    // VER=1, ULEN=255, 255 × 'u', PLEN=255, 255 × 'p': 513 bytes.
    let auth = concat(&[&[0x01, 0xff], &[b'u'; 255], &[0xff], &[b'p'; 255]]);
    assert_eq!(auth.len(), 513);
    let t = run(
        Config::USERNAME_PASSWORD,
        [GREETING_PASSWORD, &auth, CONNECT_V4],
        |user, pass| user.len() == 255 && pass.len() == 255,
    );
    assert_eq!(
        t.events,
        [
            send(SELECT_PASSWORD),
            Event::Authenticate {
                username: vec![b'u'; 255],
                password: vec![b'p'; 255],
                reply: AUTH_OK.to_vec(),
            },
            connect(ip("192.0.2.1:80")),
        ]
    );
}

#[test]
fn both_methods_enabled_prefers_password() {
    let both = Config {
        no_auth: true,
        username_password: true,
    };
    assert_eq!(session(both, GREETING_BOTH).events, [send(SELECT_PASSWORD)]);
    assert_eq!(
        session(both, GREETING_NO_AUTH).events,
        [send(SELECT_NO_AUTH)]
    );
    assert_eq!(
        session(Config::NO_AUTH, GREETING_BOTH).events,
        [send(SELECT_NO_AUTH)]
    );
}

#[test]
fn no_acceptable_method_is_refused_with_ff() {
    let refused = [close(SELECT_NONE, Refusal::NoAcceptableMethod)];
    assert_eq!(session(Config::NO_AUTH, GREETING_PASSWORD).events, refused);
    assert_eq!(
        session(Config::USERNAME_PASSWORD, GREETING_NO_AUTH).events,
        refused
    );
    assert_eq!(session(Config::NO_AUTH, GREETING_GSSAPI).events, refused);
    assert_eq!(session(Config::NO_AUTH, GREETING_EMPTY).events, refused);
    let nothing = Config {
        no_auth: false,
        username_password: false,
    };
    assert_eq!(session(nothing, GREETING_BOTH).events, refused);
}

#[test]
fn bind_is_refused_with_command_not_supported() {
    let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, BIND_V4, b"x"]));
    assert_eq!(
        t.events,
        [
            send(SELECT_NO_AUTH),
            close(
                REPLY_COMMAND_NOT_SUPPORTED,
                Refusal::CommandNotSupported(0x02)
            )
        ]
    );
    // The whole request was read before refusing it.
    assert_eq!(t.leftover, b"x");
}

#[test]
fn unknown_command_is_refused_with_command_not_supported() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, UNKNOWN_CMD_V4]),
    );
    assert_eq!(
        t.events[1],
        close(
            REPLY_COMMAND_NOT_SUPPORTED,
            Refusal::CommandNotSupported(0x09)
        )
    );
    assert!(t.leftover.is_empty());
}

#[test]
fn unknown_address_type_is_refused_after_atyp() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, CONNECT_UNKNOWN_ATYP]),
    );
    assert_eq!(
        t.events[1],
        close(
            REPLY_ATYP_NOT_SUPPORTED,
            Refusal::AddressTypeNotSupported(0x05)
        )
    );
    // The address's length is unknown, so reading stops right after ATYP.
    assert_eq!(t.leftover, [0xde, 0xad]);
}

#[test]
fn unknown_command_wins_over_unknown_address_type() {
    let bytes = [0x05, 0x02, 0x00, 0x05];
    let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, &bytes]));
    assert_eq!(
        t.events[1],
        close(
            REPLY_COMMAND_NOT_SUPPORTED,
            Refusal::CommandNotSupported(0x02)
        )
    );
}

#[test]
fn invalid_domains_are_refused_with_host_unreachable() {
    for (request, error) in [
        (CONNECT_EMPTY_DOMAIN, DomainError::Empty),
        (CONNECT_SPACE_DOMAIN, DomainError::NotPrintableAscii),
    ] {
        let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, request, b"x"]));
        assert_eq!(
            t.events[1],
            close(REPLY_HOST_UNREACHABLE, Refusal::InvalidDomain(error))
        );
        assert_eq!(t.leftover, b"x", "port was read before refusing");
    }
}

#[test]
fn nonzero_reserved_byte_is_ignored() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, CONNECT_V4_RSV_SET]),
    );
    assert_eq!(t.events[1], connect(ip("192.0.2.1:80")));
}

#[test]
fn longest_domain_fits() {
    let request = concat(&[&[0x05, 0x01, 0x00, 0x03, 0xff], &[b'a'; 255], &[0x01, 0xbb]]);
    assert_eq!(request.len(), 262);
    let t = session(Config::NO_AUTH, &concat(&[GREETING_NO_AUTH, &request]));
    let name = Domain::new(&"a".repeat(255)).unwrap();
    assert_eq!(t.events[1], connect(Target::Domain(name, 443)));
}

#[test]
fn bad_greeting_version_fails_on_the_first_byte() {
    let mut server = Server::new(Config::NO_AUTH);
    assert_eq!(
        server.feed(&[0x04]),
        Err(Socks5Error::BadVersion {
            expected: 5,
            found: 4
        })
    );
    assert_eq!(server.feed(GREETING_NO_AUTH), Err(Socks5Error::Finished));
}

#[test]
fn bad_subnegotiation_version_is_an_error() {
    let t = session(
        Config::USERNAME_PASSWORD,
        &concat(&[GREETING_PASSWORD, &[0x05, 0x01, b'a', 0x01, b'b']]),
    );
    assert_eq!(
        t.events,
        [
            send(SELECT_PASSWORD),
            Event::Error(Socks5Error::BadVersion {
                expected: 1,
                found: 5
            })
        ]
    );
}

#[test]
fn bad_request_version_is_an_error() {
    let t = session(
        Config::NO_AUTH,
        &concat(&[GREETING_NO_AUTH, &[0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1]]),
    );
    assert_eq!(
        t.events[1],
        Event::Error(Socks5Error::BadVersion {
            expected: 5,
            found: 4
        })
    );
}

#[test]
fn pipelined_data_is_left_for_the_caller() {
    let data = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let bytes = concat(&[GREETING_PASSWORD, AUTH_ALICE, CONNECT_V6, data]);
    let t = session(Config::USERNAME_PASSWORD, &bytes);
    assert_eq!(t.events.len(), 3);
    assert_eq!(t.leftover, data);
}

#[test]
fn consumed_counts_stop_at_each_message() {
    let bytes = concat(&[GREETING_NO_AUTH, CONNECT_V4, b"data"]);
    let mut server = Server::new(Config::NO_AUTH);
    let (consumed, action) = server.feed(&bytes).unwrap();
    assert_eq!((consumed, action), (3, Some(Action::Send(SELECT_NO_AUTH))));
    let (consumed, action) = server.feed(&bytes[3..]).unwrap();
    assert_eq!(consumed, 10);
    assert_eq!(
        action,
        Some(Action::Request(Request {
            command: Command::Connect,
            target: ip("192.0.2.1:80"),
        }))
    );
    assert_eq!(server.feed(b"data"), Err(Socks5Error::Finished));
}

#[test]
fn partial_message_is_consumed_and_completed_later() {
    let mut server = Server::new(Config::NO_AUTH);
    assert_eq!(server.feed(&[0x05, 0x01]), Ok((2, None)));
    assert_eq!(server.feed(&[]), Ok((0, None)));
    // The last METHODS byte, then the first request bytes.
    assert_eq!(
        server.feed(&[0x00, 0x05, 0x01]),
        Ok((1, Some(Action::Send(SELECT_NO_AUTH))))
    );
}

#[test]
fn feeding_while_credentials_are_pending_is_an_error() {
    let mut server = Server::new(Config::USERNAME_PASSWORD);
    server.feed(GREETING_PASSWORD).unwrap();
    let (consumed, action) = server.feed(&concat(&[AUTH_ALICE, CONNECT_V4])).unwrap();
    assert_eq!(consumed, AUTH_ALICE.len());
    assert!(matches!(action, Some(Action::Authenticate(_))));
    assert_eq!(server.feed(CONNECT_V4), Err(Socks5Error::AuthPending));
    assert_eq!(server.accept_auth(true), Ok(AUTH_OK));
    assert_eq!(server.accept_auth(true), Err(NotAwaitingAuth));
    assert!(matches!(
        server.feed(CONNECT_V4),
        Ok((10, Some(Action::Request(_))))
    ));
}

#[test]
fn accept_auth_before_any_credentials_is_refused() {
    let mut server = Server::new(Config::USERNAME_PASSWORD);
    assert_eq!(server.accept_auth(true), Err(NotAwaitingAuth));
}

#[test]
fn debug_output_never_shows_the_password() {
    let mut server = Server::new(Config::USERNAME_PASSWORD);
    server.feed(GREETING_PASSWORD).unwrap();
    let (_, action) = server.feed(AUTH_ALICE).unwrap();
    let Some(Action::Authenticate(credentials)) = action else {
        panic!("expected credentials, got {action:?}");
    };
    let shown = format!("{credentials:?}");
    assert_eq!(
        shown,
        r#"Credentials { username: "alice", password: <redacted> }"#
    );
    let shown = format!("{:?}", Action::Authenticate(credentials));
    assert!(!shown.contains("secret"), "{shown}");
    let shown = format!("{server:?}");
    assert!(
        !shown.contains("secret") && !shown.contains("115"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

#[test]
fn reply_fixtures() {
    let mut out = [0; MAX_REPLY_LEN];
    let reply = Reply::success("198.51.100.7:40000".parse().unwrap());
    assert_eq!(reply.encoded_len(), 10);
    let len = encode_reply(&reply, &mut out).unwrap();
    assert_eq!(&out[..len], REPLY_SUCCESS_V4);

    let reply = Reply::success("[2001:db8::7]:1080".parse().unwrap());
    assert_eq!(reply.encoded_len(), 22);
    let len = encode_reply(&reply, &mut out).unwrap();
    assert_eq!(&out[..len], REPLY_SUCCESS_V6);

    let len = encode_reply(&Reply::failure(ReplyCode::HostUnreachable), &mut out).unwrap();
    assert_eq!(&out[..len], REPLY_HOST_UNREACHABLE);

    // VER=5 REP=0 RSV=0, ATYP=DOMAINNAME, length 4, "a.io", port 80.
    let reply = Reply {
        code: ReplyCode::Succeeded,
        bound: Target::Domain(Domain::new("a.io").unwrap(), 80),
    };
    let len = encode_reply(&reply, &mut out).unwrap();
    assert_eq!(
        &out[..len],
        [
            0x05, 0x00, 0x00, 0x03, 4, b'a', b'.', b'i', b'o', 0x00, 0x50
        ]
    );
}

#[test]
fn reply_codes_are_rfc1928_values() {
    let codes = [
        (ReplyCode::Succeeded, 0x00, "succeeded"),
        (
            ReplyCode::GeneralFailure,
            0x01,
            "general SOCKS server failure",
        ),
        (
            ReplyCode::ConnectionNotAllowed,
            0x02,
            "connection not allowed by ruleset",
        ),
        (ReplyCode::NetworkUnreachable, 0x03, "network unreachable"),
        (ReplyCode::HostUnreachable, 0x04, "host unreachable"),
        (ReplyCode::ConnectionRefused, 0x05, "connection refused"),
        (ReplyCode::TtlExpired, 0x06, "TTL expired"),
        (
            ReplyCode::CommandNotSupported,
            0x07,
            "command not supported",
        ),
        (
            ReplyCode::AddressTypeNotSupported,
            0x08,
            "address type not supported",
        ),
    ];
    for (code, value, text) in codes {
        assert_eq!(code.code(), value);
        assert_eq!(code.to_string(), text);
    }
}

#[test]
fn reply_into_short_buffer_fails() {
    let mut out = [0; 21];
    let reply = Reply::success("[2001:db8::7]:1080".parse().unwrap());
    assert_eq!(
        encode_reply(&reply, &mut out),
        Err(BufferTooSmall {
            needed: 22,
            available: 21
        })
    );
}

// ---------------------------------------------------------------------------------------
// UDP request header
// ---------------------------------------------------------------------------------------

#[test]
fn udp_fixtures_decode() {
    let datagram = decode_udp(UDP_V4).unwrap();
    assert_eq!(datagram.target, ip("192.0.2.53:53"));
    assert_eq!(datagram.payload, [0xaa, 0xbb, 0xcc]);

    let datagram = decode_udp(UDP_DOMAIN).unwrap();
    assert_eq!(
        datagram.target,
        Target::Domain(Domain::new("a.io").unwrap(), 443)
    );
    assert_eq!(datagram.payload, b"hi");

    // A header with no payload is a valid, empty datagram.
    assert_eq!(decode_udp(&UDP_V4[..10]).unwrap().payload, b"");
}

#[test]
fn udp_fixtures_encode() {
    let mut out = [0; MAX_UDP_HEADER_LEN];
    let target = ip("192.0.2.53:53");
    assert_eq!(udp_header_len(&target), 10);
    let len = encode_udp_header(&target, &mut out).unwrap();
    assert_eq!(&out[..len], &UDP_V4[..10]);

    let target = Target::Domain(Domain::new("a.io").unwrap(), 443);
    assert_eq!(udp_header_len(&target), 11);
    let len = encode_udp_header(&target, &mut out).unwrap();
    assert_eq!(&out[..len], &UDP_DOMAIN[..11]);

    assert_eq!(udp_header_len(&ip("[::1]:53")), 22);
}

#[test]
fn udp_malformed_headers_are_refused() {
    assert_eq!(decode_udp(UDP_FRAGMENT), Err(UdpError::Fragmented(0x01)));
    assert_eq!(
        decode_udp(&[0x00, 0x00, 0x80, 0x01]),
        Err(UdpError::Fragmented(0x80))
    );
    assert_eq!(
        decode_udp(&[0x00, 0x00, 0x00, 0x02, 1, 2, 3, 4]),
        Err(UdpError::AddressTypeNotSupported(0x02))
    );
    assert_eq!(
        decode_udp(&[0x00, 0x00, 0x00, 0x03, 0, 0x00, 0x35]),
        Err(UdpError::InvalidDomain(DomainError::Empty))
    );
    for len in 0..10 {
        assert_eq!(
            decode_udp(&UDP_V4[..len]),
            Err(UdpError::Truncated),
            "{len}"
        );
    }
}

#[test]
fn udp_prepend_writes_into_headroom() {
    let mut buf = [0; 32];
    buf[20..23].copy_from_slice(b"abc");
    let start = prepend_udp_header(&ip("192.0.2.53:53"), &mut buf, 20).unwrap();
    assert_eq!(start, 10);
    assert_eq!(&buf[start..20], &UDP_V4[..10]);
    assert_eq!(&buf[20..23], b"abc");

    let mut small = [0; 16];
    assert_eq!(
        prepend_udp_header(&ip("192.0.2.53:53"), &mut small, 5),
        Err(BufferTooSmall {
            needed: 10,
            available: 5
        })
    );
    assert_eq!(small, [0; 16], "nothing written");
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn target_strategy() -> impl Strategy<Value = Target> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| Target::Ip(SocketAddr::V4(
            SocketAddrV4::new(Ipv4Addr::from(ip), port)
        ))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| Target::Ip(SocketAddr::V6(
            SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
        ))),
        ("[!-~]{1,255}", any::<u16>()).prop_map(|(name, port)| Target::Domain(
            Domain::new(&name).expect("visible ASCII"),
            port
        )),
    ]
}

fn encode_target(target: &Target) -> Vec<u8> {
    // The UDP header is RSV(2) FRAG(1) then the same ATYP ADDR PORT group.
    let mut out = [0; MAX_UDP_HEADER_LEN];
    let len = encode_udp_header(target, &mut out).expect("fits the longest header");
    out[3..len].to_vec()
}

/// A client session built from parts, and what the server must make of it.
#[derive(Debug, Clone)]
struct Scenario {
    config: Config,
    bytes: Vec<u8>,
    expected: Vec<Event>,
    accept: bool,
    trailing: Vec<u8>,
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        any::<(bool, bool)>(),
        prop::collection::vec(any::<u8>(), 0..8),
        prop::collection::vec(any::<u8>(), 0..=255),
        prop::collection::vec(any::<u8>(), 0..=255),
        any::<bool>(),
        prop::sample::select(vec![0x01u8, 0x02, 0x03, 0x00, 0x7f]),
        target_strategy(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |((no_auth, password), methods, user, pass, accept, cmd, target, trailing)| {
                let config = Config {
                    no_auth,
                    username_password: password,
                };
                build_scenario(
                    config, &methods, &user, &pass, accept, cmd, target, trailing,
                )
            },
        )
}

#[allow(clippy::too_many_arguments)]
fn build_scenario(
    config: Config,
    methods: &[u8],
    user: &[u8],
    pass: &[u8],
    accept: bool,
    cmd: u8,
    target: Target,
    trailing: Vec<u8>,
) -> Scenario {
    let mut bytes = vec![0x05, u8::try_from(methods.len()).expect("under 8 methods")];
    bytes.extend_from_slice(methods);
    let mut expected = Vec::new();
    let method = if config.username_password && methods.contains(&0x02) {
        0x02
    } else if config.no_auth && methods.contains(&0x00) {
        0x00
    } else {
        expected.push(close(SELECT_NONE, Refusal::NoAcceptableMethod));
        bytes.extend_from_slice(&trailing);
        return Scenario {
            config,
            bytes,
            expected,
            accept,
            trailing,
        };
    };
    expected.push(send(&[0x05, method]));
    if method == 0x02 {
        bytes.extend_from_slice(&[0x01, u8::try_from(user.len()).expect("at most 255")]);
        bytes.extend_from_slice(user);
        bytes.push(u8::try_from(pass.len()).expect("at most 255"));
        bytes.extend_from_slice(pass);
        expected.push(Event::Authenticate {
            username: user.to_vec(),
            password: pass.to_vec(),
            reply: if accept { AUTH_OK } else { AUTH_FAILED }.to_vec(),
        });
    }
    if method == 0x00 || accept {
        bytes.extend_from_slice(&[0x05, cmd, 0x00]);
        bytes.extend_from_slice(&encode_target(&target));
        expected.push(match cmd {
            0x01 => connect(target),
            0x03 => Event::Request(Request {
                command: Command::UdpAssociate,
                target,
            }),
            other => close(
                REPLY_COMMAND_NOT_SUPPORTED,
                Refusal::CommandNotSupported(other),
            ),
        });
    }
    bytes.extend_from_slice(&trailing);
    Scenario {
        config,
        bytes,
        expected,
        accept,
        trailing,
    }
}

/// Cuts `bytes` at the given points (taken modulo its length).
fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks
}

/// Arbitrary bytes behind prefixes that reach each stage of the handshake.
fn fuzz_input_strategy() -> impl Strategy<Value = Vec<u8>> {
    let prefixes: Vec<&'static [u8]> = vec![
        &[],
        &[0x05],
        &[0x05, 0x01, 0x00],
        &[0x05, 0x01, 0x02],
        &[0x05, 0x01, 0x02, 0x01],
        &[0x05, 0x01, 0x00, 0x05, 0x01, 0x00],
        &[0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03],
    ];
    (
        prop::sample::select(prefixes),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(prefix, tail)| concat(&[prefix, &tail]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_sessions_decode_to_their_parts(s in scenario_strategy()) {
        let t = run(s.config, [&s.bytes[..]], |_, _| s.accept);
        prop_assert_eq!(&t.events, &s.expected);
        prop_assert_eq!(&t.leftover, &s.trailing);
    }

    #[test]
    fn any_chunking_matches_one_shot(
        s in scenario_strategy(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = run(s.config, [&s.bytes[..]], |_, _| s.accept);
        let chunks = chunked(&s.bytes, &cuts);
        let pieces = run(s.config, chunks.iter().map(Vec::as_slice), |_, _| s.accept);
        prop_assert_eq!(&pieces, &whole);
        let bytewise = run(s.config, s.bytes.chunks(1), |_, _| s.accept);
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn arbitrary_bytes_in_any_chunking_never_panic_and_agree(
        bytes in fuzz_input_strategy(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        no_auth in any::<bool>(),
        accept in any::<bool>(),
    ) {
        let config = Config { no_auth, username_password: true };
        let whole = run(config, [&bytes[..]], |_, _| accept);
        let chunks = chunked(&bytes, &cuts);
        prop_assert_eq!(&run(config, chunks.iter().map(Vec::as_slice), |_, _| accept), &whole);
        prop_assert_eq!(&run(config, bytes.chunks(1), |_, _| accept), &whole);
    }

    #[test]
    fn udp_header_round_trips_through_headroom(
        target in target_strategy(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = vec![0; MAX_UDP_HEADER_LEN + payload.len()];
        buf[MAX_UDP_HEADER_LEN..].copy_from_slice(&payload);
        let start = prepend_udp_header(&target, &mut buf, MAX_UDP_HEADER_LEN).unwrap();
        prop_assert_eq!(MAX_UDP_HEADER_LEN - start, udp_header_len(&target));
        let datagram = decode_udp(&buf[start..]).unwrap();
        prop_assert_eq!(&datagram.target, &target);
        prop_assert_eq!(datagram.payload, &payload[..]);
    }

    #[test]
    fn reply_round_trips(target in target_strategy(), code in 0u8..=8) {
        let codes = [
            ReplyCode::Succeeded, ReplyCode::GeneralFailure, ReplyCode::ConnectionNotAllowed,
            ReplyCode::NetworkUnreachable, ReplyCode::HostUnreachable,
            ReplyCode::ConnectionRefused, ReplyCode::TtlExpired,
            ReplyCode::CommandNotSupported, ReplyCode::AddressTypeNotSupported,
        ];
        let reply = Reply { code: codes[usize::from(code)], bound: target.clone() };
        let mut out = [0; MAX_REPLY_LEN];
        let len = encode_reply(&reply, &mut out).unwrap();
        prop_assert_eq!(len, reply.encoded_len());
        prop_assert_eq!(&out[..3], &[0x05, code, 0x00]);
        // The address group is the UDP header's: decode it through `decode_udp`.
        let as_udp = concat(&[&[0, 0, 0], &out[3..len]]);
        prop_assert_eq!(decode_udp(&as_udp).unwrap().target, target);
    }

    #[test]
    fn arbitrary_datagrams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(datagram) = decode_udp(&bytes) {
            prop_assert!(bytes.ends_with(datagram.payload));
            let header = bytes.len() - datagram.payload.len();
            prop_assert_eq!(header, udp_header_len(&datagram.target));
        }
    }

    #[test]
    fn domain_accepts_exactly_visible_ascii(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let valid = !bytes.is_empty()
            && bytes.len() <= 255
            && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
        match Domain::from_bytes(&bytes) {
            Ok(name) => {
                prop_assert!(valid);
                prop_assert_eq!(name.as_str().as_bytes(), &bytes[..]);
            }
            Err(_) => prop_assert!(!valid),
        }
    }
}

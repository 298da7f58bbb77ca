//! `veil_proto::socks5` on a client's byte stream, fed in arbitrary chunks (see
//! [`crate::chunks`]). Flags: bits 0-1 pick the [`Config`]; bit 2 is the verdict on any
//! credentials.
//!
//! The server's transcript (what it sends, asks, refuses, and where the relayed data starts)
//! is the same in any chunking as in one piece; `feed` never consumes more than it is given,
//! and all of it when it asks for more; after the handshake, feeding is an error. The
//! stream is also read as a UDP relay datagram, whose header re-encodes byte for byte.

use veil_proto::socks5::{
    Action, Config, NotAwaitingAuth, Refusal, Request, Server, Socks5Error, decode_udp,
    encode_udp_header, udp_header_len,
};

use crate::chunks::Chunked;

/// One thing the server did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Send(Vec<u8>),
    Close(Vec<u8>, Refusal),
    Authenticate {
        username: Vec<u8>,
        password: Vec<u8>,
        reply: Vec<u8>,
    },
    /// The request, and the offset in the stream where the relayed data starts.
    Request(Request, usize),
    Error(Socks5Error),
}

fn config(flags: u8) -> Config {
    Config {
        no_auth: flags & 0b01 != 0,
        username_password: flags & 0b10 != 0,
    }
}

/// Runs the handshake chunked and in one piece, and compares.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some(input) = Chunked::parse(data) else {
        return;
    };
    let config = config(input.flags);
    let accept = input.flags & 0b100 != 0;
    let chunked = handshake(config, accept, &input.chunks());
    let whole = handshake(config, accept, &[input.stream]);
    assert_eq!(chunked, whole, "chunked vs one-shot");
    udp_datagram(input.stream);
}

/// Feeds `chunks` to a fresh server as a caller would, answering credentials with `accept`.
pub(crate) fn handshake(config: Config, accept: bool, chunks: &[&[u8]]) -> Vec<Step> {
    let mut server = Server::new(config);
    let mut steps = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let (consumed, action) = match server.feed(input) {
                Ok(step) => step,
                Err(e) => {
                    steps.push(Step::Error(e));
                    assert_eq!(server.feed(input), Err(Socks5Error::Finished));
                    return steps;
                }
            };
            assert!(
                consumed <= input.len(),
                "consumed {consumed} of {}",
                input.len()
            );
            offset += consumed;
            input = &input[consumed..];
            let Some(action) = action else {
                assert!(input.is_empty(), "asked for more with input left");
                break;
            };
            let step = match action {
                Action::Send(bytes) => Step::Send(bytes.to_vec()),
                Action::Close { reply, reason } => Step::Close(reply.to_vec(), reason),
                Action::Request(request) => Step::Request(request, offset),
                Action::Authenticate(credentials) => {
                    let username = credentials.username().to_vec();
                    let password = credentials.password().to_vec();
                    assert_eq!(server.feed(input), Err(Socks5Error::AuthPending));
                    let reply = server
                        .accept_auth(accept)
                        .expect("credentials wait")
                        .to_vec();
                    assert_eq!(server.accept_auth(accept), Err(NotAwaitingAuth));
                    Step::Authenticate {
                        username,
                        password,
                        reply,
                    }
                }
            };
            let over = match step {
                Step::Close(..) | Step::Request(..) => true,
                Step::Authenticate { .. } => !accept,
                Step::Send(_) | Step::Error(_) => false,
            };
            steps.push(step);
            if over {
                assert_eq!(server.feed(input), Err(Socks5Error::Finished));
                return steps;
            }
        }
    }
    steps
}

/// A datagram whose header decodes re-encodes, past the ignored RSV, byte for byte.
fn udp_datagram(data: &[u8]) {
    let Ok(datagram) = decode_udp(data) else {
        return;
    };
    let header_len = udp_header_len(&datagram.target);
    assert_eq!(header_len + datagram.payload.len(), data.len());
    assert!(data.ends_with(datagram.payload));
    let mut header = vec![0; header_len];
    assert_eq!(
        encode_udp_header(&datagram.target, &mut header),
        Ok(header_len)
    );
    assert_eq!(
        header[2..],
        data[2..header_len],
        "RSV aside, the same header"
    );
}

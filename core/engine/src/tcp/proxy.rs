//! The PROXY protocol (v1 and v2) in front of the TCP on-ramp: a load balancer or another
//! proxy in front of the edge says who the client is before TLS starts
//! (`EdgeConfig::proxy_protocol`), and that address is the client's for tokens, hooks,
//! rules, audit and logs.
//!
//! Parsing is veil-proto's (`proxy_protocol`); this module only buffers the header's bytes
//! (bounded by the decoder's 4 KiB) and says where TLS begins.

use std::net::SocketAddr;

use veil_proto::proxy_protocol::{self, Command, Decoded};

/// What the bytes so far gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The header is not complete yet.
    NeedMore,
    /// The header ended; `client` is the address it names (`None`: keep the socket's, as
    /// for a LOCAL header or one without IP addresses); `rest` are the bytes after it, the
    /// start of TLS.
    Done {
        client: Option<SocketAddr>,
        rest: Vec<u8>,
    },
}

/// A connection's header being read.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    buf: Vec<u8>,
}

impl Pending {
    /// Adds bytes from the socket. `Err` (with a reason for the log) when they are not a
    /// valid header: the connection is closed.
    //# proxy-protocol.txt §2: "the receiver MUST be configured to only receive the
    //# protocol described in this specification and MUST not try to guess whether the
    //# protocol header is present or not."
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Outcome, &'static str> {
        self.buf.extend_from_slice(bytes);
        match proxy_protocol::decode(&self.buf) {
            Ok(Decoded::Incomplete) => Ok(Outcome::NeedMore),
            Ok(Decoded::Complete { header, len }) => {
                //# proxy-protocol.txt §2.2: "the receiver must accept this connection as
                //# valid and must use the real connection endpoints and discard the
                //# protocol block including the family which is ignored."
                let client = match header.command {
                    Command::Local => None,
                    Command::Proxy => header.addresses.source(),
                };
                let rest = self.buf.split_off(len);
                Ok(Outcome::Done { client, rest })
            }
            Err(proxy_protocol::DecodeError::NotProxy) => Err("no PROXY protocol header"),
            Err(_) => Err("malformed PROXY protocol header"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_line_in_pieces_gives_the_client_and_the_bytes_after_it() {
        let mut pending = Pending::default();
        assert_eq!(
            pending.feed(b"PROXY TCP4 203.0.113.9 "),
            Ok(Outcome::NeedMore)
        );
        let outcome = pending.feed(b"192.0.2.1 5555 443\r\n\x16\x03\x01");
        assert_eq!(
            outcome,
            Ok(Outcome::Done {
                client: Some("203.0.113.9:5555".parse().expect("addr")),
                rest: b"\x16\x03\x01".to_vec(),
            })
        );
    }

    #[test]
    fn a_v2_local_header_keeps_the_socket_s_address() {
        let mut header = proxy_protocol::V2_SIGNATURE.to_vec();
        // Version 2, LOCAL; family and transport unspecified; no address bytes.
        header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let mut pending = Pending::default();
        assert_eq!(
            pending.feed(&header),
            Ok(Outcome::Done {
                client: None,
                rest: Vec::new()
            })
        );
    }

    #[test]
    fn tls_without_a_header_is_refused() {
        let mut pending = Pending::default();
        assert!(pending.feed(b"\x16\x03\x01\x02\x00").is_err());
    }
}

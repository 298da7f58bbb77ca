//! PROXY protocol toward origins (`EdgeConfig::egress_proxy_protocol`, or per rule:
//! `proxy_protocol` in a `[[rule]]`): what a host writes on a TCP connection it dialled for
//! a tunnel before any of the tunnel's bytes, so that an origin behind the edge (nginx,
//! `HAProxy`, a mail server with `proxy_protocol on`) sees the client's address instead of
//! the edge's.
//!
//! The header says: this connection relays one from the client's address (after a PROXY
//! header on the TCP on-ramp, the address it named) to the edge's address the client
//! reached, as `HAProxy`'s `send-proxy` does. The encoding is veil-proto's.

use std::net::SocketAddr;

use veil_proto::proxy_protocol::{Addresses, Transport, V1Line, V2Encoder};

use super::{Endpoint, RoleState};
use crate::rules::RuleProxyProtocol;
use crate::types::TunnelId;

/// Which PROXY protocol version the edge sends to origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProxyProtocolVersion {
    /// The text line (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

impl Endpoint {
    /// Edge: the bytes to write on the TCP connection dialled for `tunnel` to `dialed`
    /// before any of the tunnel's bytes; `None` when the edge sends no PROXY header there
    /// (the default), for a tunnel it does not know, or when the client's and the edge's
    /// addresses are of different families (nothing a header could say truthfully).
    ///
    /// The first rule that matches the request at `dialed` decides if it names a
    /// `proxy_protocol`; otherwise `EdgeConfig::egress_proxy_protocol` does.
    pub fn egress_preamble(&self, tunnel: TunnelId, dialed: SocketAddr) -> Option<Vec<u8>> {
        let RoleState::Edge(edge) = &self.role else {
            return None;
        };
        let entry = self.tunnels.get(&tunnel)?;
        let request = entry.request.as_deref()?;
        let by_rule = edge
            .rules
            .proxy_protocol_at(&edge.rule_query(request), dialed.ip());
        let version = match by_rule {
            Some(RuleProxyProtocol::Off) => return None,
            Some(RuleProxyProtocol::V1) => ProxyProtocolVersion::V1,
            Some(RuleProxyProtocol::V2) => ProxyProtocolVersion::V2,
            None => edge.egress_proxy_protocol?,
        };
        let local = self.conns.get(entry.conn?)?.local;
        header(version, request.client.peer, local)
    }
}

/// A PROXY header for a TCP connection from `client` to `local`.
fn header(version: ProxyProtocolVersion, client: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
    let addresses = Addresses::from_pair(client, local)?;
    match version {
        ProxyProtocolVersion::V1 => {
            let line = V1Line::new(&addresses);
            let mut out = vec![0; line.encoded_len()];
            let len = line.encode(&mut out).ok()?;
            out.truncate(len);
            Some(out)
        }
        ProxyProtocolVersion::V2 => {
            let encoder = V2Encoder::proxy(Transport::Stream, addresses);
            let mut out = vec![0; encoder.encoded_len().ok()?];
            let len = encoder.encode(&mut out).ok()?;
            out.truncate(len);
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_proto::proxy_protocol::{Decoded, decode};

    #[test]
    fn a_v1_line_names_the_client_and_the_edge() {
        let client = "203.0.113.9:5555".parse().expect("addr");
        let local = "192.0.2.1:4433".parse().expect("addr");
        let line = header(ProxyProtocolVersion::V1, client, local).expect("line");
        assert_eq!(line, b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 4433\r\n");
    }

    #[test]
    fn a_v2_header_decodes_back_to_the_same_addresses() {
        let client: SocketAddr = "[2001:db8::7]:40000".parse().expect("addr");
        let local: SocketAddr = "[2001:db8::1]:4433".parse().expect("addr");
        let bytes = header(ProxyProtocolVersion::V2, client, local).expect("header");
        let Ok(Decoded::Complete { header, len }) = decode(&bytes) else {
            panic!("not a complete header");
        };
        assert_eq!(len, bytes.len());
        assert_eq!(header.addresses.source(), Some(client));
        assert_eq!(header.addresses.destination(), Some(local));
    }

    #[test]
    fn mixed_families_get_no_header() {
        let client = "203.0.113.9:5555".parse().expect("addr");
        let local = "[2001:db8::1]:4433".parse().expect("addr");
        assert_eq!(header(ProxyProtocolVersion::V1, client, local), None);
    }
}

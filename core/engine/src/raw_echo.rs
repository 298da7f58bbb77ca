//! ICMP echo through a raw socket, for a host's decap off-ramp where ping sockets are not
//! allowed (`net.ipv4.ping_group_range`) but raw ones are (`CAP_NET_RAW`, root).
//!
//! A ping socket rewrites the identifier of each echo request and returns only its own
//! replies; a raw socket does neither: it sends the message as given and receives every
//! ICMP message from the address it is connected to (over IPv4 with the IP header in
//! front). So each decapsulated echo flow gets an identifier of its own ([`RawEcho::new`]),
//! its requests carry it ([`RawEcho::request`]), and only the replies that carry it are its
//! ([`RawEcho::reply`]). The engine puts the client's identifier back in the reply it
//! builds (`Endpoint::ip_flow_send`), as it does for a ping socket's.
//!
//! Pure functions over bytes: every host uses the same ones.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};

/// The identifiers handed out so far (process-wide, so that two flows to one destination
/// never share one).
static NEXT_IDENTIFIER: AtomicU16 = AtomicU16::new(0x7e11);

/// ICMP echo reply types: for IPv4 (RFC 792), for IPv6 (RFC 4443 §4.2).
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REPLY_V6: u8 = 129;

/// One decapsulated echo flow on a raw socket: the identifier its requests carry, and its
/// family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEcho {
    identifier: u16,
    v4: bool,
}

impl RawEcho {
    /// A flow to `destination`, with the next identifier of this process.
    pub fn new(destination: IpAddr) -> Self {
        Self::with_identifier(destination, NEXT_IDENTIFIER.fetch_add(1, Ordering::Relaxed))
    }

    /// A flow to `destination` whose requests carry `identifier`.
    pub fn with_identifier(destination: IpAddr, identifier: u16) -> Self {
        Self {
            identifier,
            v4: destination.is_ipv4(),
        }
    }

    /// The echo request `payload` (a whole ICMP message, as `Endpoint::ip_flow_recv` gives
    /// it) as this flow sends it, into `out`: with its identifier and, over IPv4, its
    /// checksum (over IPv6 the kernel computes it, RFC 3542 §3.1).
    pub fn request(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(payload);
        if let Some(identifier) = out.get_mut(4..6) {
            identifier.copy_from_slice(&self.identifier.to_be_bytes());
        }
        if self.v4 {
            if let Some(checksum) = out.get_mut(2..4) {
                checksum.fill(0);
            }
            let sum = internet_checksum(out);
            if let Some(checksum) = out.get_mut(2..4) {
                checksum.copy_from_slice(&sum.to_be_bytes());
            }
        }
    }

    /// The echo reply in what the raw socket received, if it is one to this flow (after
    /// the IPv4 header a raw IPv4 socket returns); `None` for anything else.
    pub fn reply<'a>(&self, received: &'a [u8]) -> Option<&'a [u8]> {
        let message = if self.v4 {
            let header_len = usize::from(received.first()? & 0x0f) * 4;
            received.get(header_len..)?
        } else {
            received
        };
        let reply = if self.v4 {
            ECHO_REPLY_V4
        } else {
            ECHO_REPLY_V6
        };
        let identifier = message.get(4..6)?;
        (message.first() == Some(&reply) && identifier == self.identifier.to_be_bytes())
            .then_some(message)
    }
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| match *pair {
            [high, low] => u32::from(u16::from_be_bytes([high, low])),
            [high] => u32::from(high) << 8,
            _ => 0,
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(icmp_type: u8, identifier: u16) -> Vec<u8> {
        let mut message = vec![icmp_type, 0, 0, 0];
        message.extend_from_slice(&identifier.to_be_bytes());
        message.extend_from_slice(&[0, 7, b'h', b'i']);
        message
    }

    fn v4() -> IpAddr {
        "192.0.2.1".parse().expect("v4")
    }

    fn v6() -> IpAddr {
        "2001:db8::1".parse().expect("v6")
    }

    #[test]
    fn a_raw_echo_request_gets_the_flow_identifier_and_a_valid_checksum() {
        let raw = RawEcho::with_identifier(v4(), 0xbeef);
        let mut out = Vec::new();
        raw.request(&echo(8, 0x1234), &mut out);
        assert_eq!(out.get(4..6), Some(&[0xbe, 0xef][..]));
        assert_eq!(internet_checksum(&out), 0, "a valid checksum sums to zero");
        assert_eq!(out.get(6..), echo(8, 0).get(6..), "sequence and data kept");
        // Over IPv6 the kernel computes the checksum.
        let raw = RawEcho::with_identifier(v6(), 0xbeef);
        raw.request(&echo(128, 0x1234), &mut out);
        assert_eq!(out.get(2..6), Some(&[0, 0, 0xbe, 0xef][..]));
    }

    #[test]
    fn a_raw_socket_keeps_only_the_replies_to_its_flow() {
        let raw = RawEcho::with_identifier(v4(), 0xbeef);
        // A raw IPv4 socket returns the IP header (20 bytes here) before the message.
        let with_header = |message: &[u8]| {
            let mut packet = vec![0x45];
            packet.resize(20, 0);
            packet.extend_from_slice(message);
            packet
        };
        let mine = echo(0, 0xbeef);
        assert_eq!(raw.reply(&with_header(&mine)), Some(&mine[..]));
        assert_eq!(
            raw.reply(&with_header(&echo(0, 0xbeee))),
            None,
            "another flow's"
        );
        assert_eq!(raw.reply(&with_header(&echo(8, 0xbeef))), None, "a request");
        assert_eq!(raw.reply(&[0x46, 0, 0]), None, "truncated");
        let raw = RawEcho::with_identifier(v6(), 0xbeef);
        let mine = echo(129, 0xbeef);
        assert_eq!(raw.reply(&mine), Some(&mine[..]));
        assert_eq!(raw.reply(&echo(135, 0xbeef)), None, "neighbour discovery");
    }

    #[test]
    fn flows_get_identifiers_of_their_own() {
        let (a, b) = (RawEcho::new(v4()), RawEcho::new(v4()));
        assert_ne!(a, b);
    }
}

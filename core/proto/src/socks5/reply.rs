//! The server's reply to a request (RFC 1928 §6).
//!
//! ```text
//! +----+-----+-------+------+----------+----------+
//! |VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
//! +----+-----+-------+------+----------+----------+
//! | 1  |  1  | X'00' |  1   | Variable |    2     |
//! +----+-----+-------+------+----------+----------+
//! ```

use core::fmt;
use core::net::SocketAddr;

use super::VERSION;
use super::addr::{MAX_TARGET_LEN, Target};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;
use crate::http1::ProxyErrorType;

/// The longest reply: `VER REP RSV` and a 255-octet domain name as `BND.ADDR`.
pub const MAX_REPLY_LEN: usize = 3 + MAX_TARGET_LEN;

/// `REP`, the outcome of a request. Every code RFC 1928 §6 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplyCode {
    /// X'00' succeeded.
    Succeeded = 0x00,
    /// X'01' general SOCKS server failure.
    GeneralFailure = 0x01,
    /// X'02' connection not allowed by ruleset.
    ConnectionNotAllowed = 0x02,
    /// X'03' network unreachable.
    NetworkUnreachable = 0x03,
    /// X'04' host unreachable.
    HostUnreachable = 0x04,
    /// X'05' connection refused.
    ConnectionRefused = 0x05,
    /// X'06' TTL expired.
    TtlExpired = 0x06,
    /// X'07' command not supported.
    CommandNotSupported = 0x07,
    /// X'08' address type not supported.
    AddressTypeNotSupported = 0x08,
}

impl ReplyCode {
    /// The `REP` octet.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reply for a tunnel the proxy refused with HTTP `status` and, when it said,
    /// the RFC 9209 Proxy-Status `error`: the same answer from every on-ramp.
    pub const fn for_refusal(status: u16, error: Option<ProxyErrorType>) -> Self {
        match error {
            Some(error) => Self::for_proxy_error(error),
            None => Self::for_status(status),
        }
    }

    /// The reply for a Proxy-Status error type.
    pub const fn for_proxy_error(error: ProxyErrorType) -> Self {
        match error {
            ProxyErrorType::DestinationIpProhibited | ProxyErrorType::HttpRequestDenied => {
                Self::ConnectionNotAllowed
            }
            ProxyErrorType::DnsError | ProxyErrorType::DnsTimeout => Self::HostUnreachable,
            ProxyErrorType::DestinationIpUnroutable => Self::NetworkUnreachable,
            ProxyErrorType::ConnectionRefused => Self::ConnectionRefused,
            // RFC 1928 has no timeout code; X'06' "TTL expired" is the usual stand-in.
            ProxyErrorType::ConnectionTimeout => Self::TtlExpired,
            _ => Self::GeneralFailure,
        }
    }

    /// The reply for an HTTP status that came without an error type.
    pub const fn for_status(status: u16) -> Self {
        match status {
            // A forbidden target, or credentials the proxy did not take: policy says no.
            401 | 403 | 407 => Self::ConnectionNotAllowed,
            504 => Self::TtlExpired,
            _ => Self::GeneralFailure,
        }
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::GeneralFailure => "general SOCKS server failure",
            Self::ConnectionNotAllowed => "connection not allowed by ruleset",
            Self::NetworkUnreachable => "network unreachable",
            Self::HostUnreachable => "host unreachable",
            Self::ConnectionRefused => "connection refused",
            Self::TtlExpired => "TTL expired",
            Self::CommandNotSupported => "command not supported",
            Self::AddressTypeNotSupported => "address type not supported",
        })
    }
}

/// A reply to write to the client once the caller has acted on a request.
///
/// On success `bound` is the address the server used: for CONNECT, the local address of
/// the outgoing connection; for UDP ASSOCIATE, where the client must send its datagrams:
///
/// > RFC 1928 §6: "In the reply to a UDP ASSOCIATE request, the BND.PORT and BND.ADDR
/// > fields indicate the port number/address where the client MUST send UDP request
/// > messages to be relayed."
///
/// On failure the caller closes the connection after writing the reply:
///
/// > RFC 1928 §6: "When a reply (REP value other than X'00') indicates a failure, the SOCKS
/// > server MUST terminate the TCP connection shortly after sending the reply."
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// `REP`.
    pub code: ReplyCode,
    /// `BND.ADDR` and `BND.PORT`.
    pub bound: Target,
}

impl Reply {
    /// A success reply carrying the address the server bound.
    pub fn success(bound: SocketAddr) -> Self {
        Self {
            code: ReplyCode::Succeeded,
            bound: Target::Ip(bound),
        }
    }

    /// A failure reply; it carries `0.0.0.0:0` as its address.
    pub const fn failure(code: ReplyCode) -> Self {
        Self {
            code,
            bound: Target::UNSPECIFIED,
        }
    }

    /// Bytes of the encoding: 10 with an IPv4 address, 22 with IPv6.
    pub fn encoded_len(&self) -> usize {
        3 + self.bound.encoded_len()
    }
}

/// Writes `reply` to the front of `out` and returns its length.
///
/// Nothing is written if `out` is shorter than [`Reply::encoded_len`]; [`MAX_REPLY_LEN`]
/// bytes always suffice.
pub fn encode_reply(reply: &Reply, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut out = Writer::new(out);
    out.reserve(reply.encoded_len())?;
    out.u8(VERSION)?;
    out.u8(reply.code.code())?;
    out.u8(0x00)?;
    reply.bound.encode(&mut out)?;
    Ok(out.finish())
}

/// The fixed reply the state machine sends when it refuses a request by itself.
pub(super) const fn failure_reply_bytes(code: ReplyCode) -> [u8; 10] {
    // VER REP RSV, ATYP=IPv4, 0.0.0.0, port 0
    [VERSION, code.code(), 0x00, 0x01, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_reply_codes() {
        let cases = [
            (403, ProxyErrorType::DestinationIpProhibited, 0x02),
            (403, ProxyErrorType::HttpRequestDenied, 0x02),
            (502, ProxyErrorType::DnsError, 0x04),
            (504, ProxyErrorType::DnsTimeout, 0x04),
            (502, ProxyErrorType::DestinationIpUnroutable, 0x03),
            (502, ProxyErrorType::ConnectionRefused, 0x05),
            (504, ProxyErrorType::ConnectionTimeout, 0x06),
            (503, ProxyErrorType::ConnectionLimitReached, 0x01),
            (500, ProxyErrorType::ProxyInternalError, 0x01),
        ];
        for (status, error, code) in cases {
            assert_eq!(
                ReplyCode::for_refusal(status, Some(error)).code(),
                code,
                "{error:?}"
            );
        }
        for (status, code) in [
            (403, 0x02),
            (407, 0x02),
            (401, 0x02),
            (504, 0x06),
            (502, 0x01),
        ] {
            assert_eq!(
                ReplyCode::for_refusal(status, None).code(),
                code,
                "{status}"
            );
        }
    }
    use crate::socks5::Domain;

    #[test]
    fn failure_reply_matches_the_fixed_refusal() {
        for code in [
            ReplyCode::GeneralFailure,
            ReplyCode::CommandNotSupported,
            ReplyCode::AddressTypeNotSupported,
        ] {
            let mut out = [0; MAX_REPLY_LEN];
            let len = encode_reply(&Reply::failure(code), &mut out).unwrap();
            assert_eq!(out[..len], failure_reply_bytes(code));
        }
    }

    #[test]
    fn longest_reply_fits_max_reply_len() {
        let name = Domain::new(&"a".repeat(255)).unwrap();
        let reply = Reply {
            code: ReplyCode::Succeeded,
            bound: Target::Domain(name, 1),
        };
        assert_eq!(reply.encoded_len(), MAX_REPLY_LEN);
        let mut out = [0; MAX_REPLY_LEN];
        assert_eq!(encode_reply(&reply, &mut out), Ok(MAX_REPLY_LEN));
    }

    #[test]
    fn short_buffer_is_left_untouched() {
        let mut out = [0xaa; 9];
        assert_eq!(
            encode_reply(&Reply::failure(ReplyCode::GeneralFailure), &mut out),
            Err(BufferTooSmall {
                needed: 10,
                available: 9
            })
        );
        assert_eq!(out, [0xaa; 9]);
    }
}

//! The UDP request header that prefixes every relayed datagram (RFC 1928 §7).
//!
//! ```text
//! +----+------+------+----------+----------+----------+
//! |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//! +----+------+------+----------+----------+----------+
//! | 2  |  1   |  1   | Variable |    2     | Variable |
//! +----+------+------+----------+----------+----------+
//! ```
//!
//! veil does not reassemble fragments, so it drops every datagram whose `FRAG` is not zero
//! and always sends `FRAG` zero. `RSV` is written as zero and ignored on receipt, like the
//! request's `RSV`.

use core::fmt;

use super::addr::{DomainError, MAX_TARGET_LEN, Target, TargetError};
use crate::cursor::{Reader, Writer};
use crate::error::BufferTooSmall;

/// The longest UDP request header: one with a 255-octet domain name. Reserve this much
/// headroom in front of a payload to be able to [`prepend_udp_header`] for any target.
pub const MAX_UDP_HEADER_LEN: usize = 2 + 1 + MAX_TARGET_LEN;

/// A datagram from the client's side of a UDP association, viewed in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Where the payload goes (`DST.ADDR`, `DST.PORT`).
    pub target: Target,
    /// `DATA`, borrowed from the datagram.
    pub payload: &'a [u8],
}

/// Why a datagram's UDP request header was refused. The relay drops such datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpError {
    /// The datagram ends inside the header.
    Truncated,
    /// `FRAG` is not zero: a fragment, which veil does not reassemble. Carries `FRAG`.
    Fragmented(u8),
    /// `ATYP` is not one RFC 1928 defines. Carries `ATYP`.
    AddressTypeNotSupported(u8),
    /// The domain name is not one veil resolves.
    InvalidDomain(DomainError),
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("SOCKS5 UDP datagram ends inside its header"),
            Self::Fragmented(frag) => write!(f, "SOCKS5 UDP fragment {frag:#04x} (unsupported)"),
            Self::AddressTypeNotSupported(atyp) => {
                write!(f, "SOCKS5 UDP address type {atyp:#04x} not supported")
            }
            Self::InvalidDomain(e) => write!(f, "SOCKS5 UDP target: {e}"),
        }
    }
}

impl core::error::Error for UdpError {}

impl From<TargetError> for UdpError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Truncated => Self::Truncated,
            TargetError::UnsupportedType(atyp) => Self::AddressTypeNotSupported(atyp),
            TargetError::InvalidDomain(e) => Self::InvalidDomain(e),
        }
    }
}

/// Reads the UDP request header of `datagram` and returns its target and payload.
pub fn decode_udp(datagram: &[u8]) -> Result<UdpDatagram<'_>, UdpError> {
    let mut input = Reader::new(datagram);
    let _reserved = input.u16().map_err(|_| UdpError::Truncated)?;
    let frag = input.u8().map_err(|_| UdpError::Truncated)?;
    //# RFC 1928 §7: "Implementation of fragmentation is optional; an implementation that
    //# does not support fragmentation MUST drop any datagram whose FRAG field is other
    //# than X'00'."
    if frag != 0 {
        return Err(UdpError::Fragmented(frag));
    }
    let target = Target::decode(&mut input)?;
    Ok(UdpDatagram {
        target,
        payload: input.take_rest(),
    })
}

/// Bytes of the UDP request header for `target`: 10 for IPv4, 22 for IPv6, 7 + name
/// length for a domain.
pub fn udp_header_len(target: &Target) -> usize {
    3 + target.encoded_len()
}

/// Writes the UDP request header for `target` (with `FRAG` zero) to the front of `out` and
/// returns its length. Nothing is written if it does not fit.
pub fn encode_udp_header(target: &Target, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut out = Writer::new(out);
    out.reserve(udp_header_len(target))?;
    out.u16(0x0000)?;
    out.u8(0x00)?;
    target.encode(&mut out)?;
    Ok(out.finish())
}

/// Writes the UDP request header for `target` into the headroom just before
/// `buf[payload_start..]`, and returns where the datagram now starts.
///
/// The datagram to send is `buf[start..payload_end]`. Receiving payloads at offset
/// [`MAX_UDP_HEADER_LEN`] leaves room for any target, so no payload is ever copied.
/// Fails, writing nothing, if the headroom `buf[..payload_start]` is shorter than the
/// header.
pub fn prepend_udp_header(
    target: &Target,
    buf: &mut [u8],
    payload_start: usize,
) -> Result<usize, BufferTooSmall> {
    let needed = udp_header_len(target);
    let available = buf.len();
    let headroom = buf.get_mut(..payload_start).ok_or(BufferTooSmall {
        needed: payload_start,
        available,
    })?;
    let start = payload_start.checked_sub(needed).ok_or(BufferTooSmall {
        needed,
        available: payload_start,
    })?;
    let header = headroom.get_mut(start..).unwrap_or_default();
    encode_udp_header(target, header)?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks5::Domain;

    #[test]
    fn longest_header_is_max_udp_header_len() {
        let target = Target::Domain(Domain::new(&"a".repeat(255)).unwrap(), 53);
        assert_eq!(udp_header_len(&target), MAX_UDP_HEADER_LEN);
        assert_eq!(MAX_UDP_HEADER_LEN, 262);
    }

    #[test]
    fn payload_start_past_the_buffer_is_refused() {
        let mut buf = [0; 8];
        assert_eq!(
            prepend_udp_header(&Target::UNSPECIFIED, &mut buf, 9),
            Err(BufferTooSmall {
                needed: 9,
                available: 8
            })
        );
    }
}
